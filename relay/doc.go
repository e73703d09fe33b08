// Package relay owns the engage model's contract: the Engine interface the
// dialog layer drives (Offer / Answer / Delete / Query), per-leg flags
// parsed from rtpengine-style strings, and the builtin engine that adapts
// sipanchor's own media relay to it. The rtpengine NG client and server
// (issue 5) live here too.
package relay
