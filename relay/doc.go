// Package relay will own the engage model: the Engine interface, per-leg
// flags, relay sets and nodes, and rtpengine's NG protocol (issues 3 and 5).
// Nothing lives here yet.
package relay
