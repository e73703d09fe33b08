// Package ua is a small, controllable SIP user agent with real RTP, for
// tests of user agents behind NAT: it registers, calls and answers through
// a proxy (sipanchor) over its own UDP socket or TCP connection, sends and
// checks RTP, DTMF (RFC 4733) and STUN (RFC 5389), and can be told to
// misbehave the way broken UAs do (Faults: no rport, asymmetric RTP, no
// keepalives).
//
// It uses emiago/sipgo's sip package for message types and parsing only:
// transactions (RFC 3261 section 17: Timer A/E retransmission, Timer G for
// a 2xx, absorbing retransmitted requests) are its own, so their timers
// belong to one UA and every packet leaves from the socket a test expects.
// Every request, in a dialog too, goes to Config.Server (an outbound proxy;
// the route set is kept as Route headers). Responses go back to where their
// request came from (RFC 3581 symmetric response).
//
// A UA owns its goroutines and sockets; Close releases all of them.
package ua
