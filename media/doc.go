// Package media is sipanchor's builtin RTP relay: RTP/RTCP port pairs from
// a range, one socket per side of each stream with symmetric latching (a
// side's address is learnt from its first packets, in strict mode only from
// the IPs it is expected to send from; strangers are dropped),
// forwarding, RFC 3550 receive statistics, setup and session timeouts, and
// SDP parsing and rewriting. It never sees SIP.
package media
