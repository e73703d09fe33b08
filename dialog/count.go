package dialog

import "net/netip"

// The live dialogs are tallied by caller source IP, trusted peer, user
// and each side's SIP source, for the call limits and the TCP idle check.

// Count is the number of live dialogs.
func (m *Manager) Count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.dialogs)
}

// CountFrom is the number of live dialogs whose caller sent its INVITE
// from a.
func (m *Manager) CountFrom(a netip.Addr) int { return m.count("src " + a.Unmap().String()) }

// CountPeer is the number of live dialogs whose INVITE came from the
// trusted peer named name.
func (m *Manager) CountPeer(name string) int { return m.count("peer " + name) }

// CountUser is the number of live dialogs whose caller is the user aor
// (user@domain of the INVITE's From).
func (m *Manager) CountUser(aor string) int { return m.count("user " + aor) }

// HasSource reports whether a live dialog has a side whose SIP comes from
// a: its caller's source, or its callee's once it answered. The SIP layer
// keeps a TCP connection from there open while it is silent.
func (m *Manager) HasSource(a netip.AddrPort) bool { return m.count(sourceKey(a)) > 0 }

func sourceKey(a netip.AddrPort) string {
	return "flow " + netip.AddrPortFrom(a.Addr().Unmap(), a.Port()).String()
}

func (m *Manager) count(k string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counts[k]
}

// countKeys are the tallies d counts in: its caller's source IP, peer,
// user, and the source (IP and port) of each side.
func (d *Dialog) countKeys() []string {
	keys := []string{"src " + d.src[0].Addr().Unmap().String(), sourceKey(d.src[0])}
	if d.src[1].IsValid() {
		keys = append(keys, sourceKey(d.src[1]))
	}
	if d.peer != "" {
		keys = append(keys, "peer "+d.peer)
	}
	if d.user != "" {
		keys = append(keys, "user "+d.user)
	}
	return keys
}

// uncount takes one from a tally. Call with m.mu held.
func (m *Manager) uncount(k string) {
	if m.counts[k]--; m.counts[k] <= 0 {
		delete(m.counts, k)
	}
}
