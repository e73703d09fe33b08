// Package media will own the builtin RTP relay: port allocation, sockets,
// latching, forwarding, SDP rewriting, timers and stats (issue 3). Nothing
// lives here yet.
package media
