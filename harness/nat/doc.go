// Package nat is a userspace NAT box on real loopback sockets, with the
// behaviours of RFC 4787 (UDP) and RFC 5382 (TCP), for testing user agents
// behind NAT without root, network namespaces or iptables.
//
// The kernel cannot route an inside host's packets through a userspace box,
// so the box shows the outside world to its inside hosts at view addresses:
// each outside IP X gets a view IP V(X) from the box's View prefix, and the
// outside endpoint X:p is reached from inside at V(X):p. A datagram an
// inside host U:u sends to V(X):p leaves the box from its public address
// P:x, chosen by the mapping behaviour (RFC 4787 §4.1); a datagram from
// O:q to P:x reaches U:u, from V(O):q, if the filtering behaviour (§5)
// lets it. Only the box's inside hosts may use the view sockets.
//
// SIP messages through the box are rewritten so that the world looks the
// same from inside: outside addresses become their views on the way in,
// views become outside addresses again on the way out, with Content-Length
// fixed; the endpoints an inbound message names (Via, Contact, Route,
// Record-Route, SDP media) are bound before it is delivered, so the inside
// host's answer has a socket to land on. The inside host's own addresses
// are left alone, as a real NAT leaves them — except by the broken ALG
// (Config.BrokenALG), which rewrites them badly on purpose.
//
// What it does not do: ICMP, IP fragments, IPv6, TCP simultaneous open;
// unsolicited inbound TCP connections are refused (RFC 5382 §4 REQ-4 lets
// a NAT reject them), and TCP is not hairpinned.
package nat
