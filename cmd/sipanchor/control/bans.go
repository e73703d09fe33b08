package control

import (
	"net/http"
	"net/netip"
	"time"

	"sipanchor/sip"
)

// BanList is the flood ban table ([limits]); sip.Proxy implements it.
type BanList interface {
	// Bans lists the sources banned now.
	Bans() []sip.Ban
	// Unban lifts a ban; false when the address is not banned.
	Unban(ip netip.Addr) bool
}

type banView struct {
	IP       string    `json:"ip"`
	Since    time.Time `json:"since"`
	Until    time.Time `json:"until"`
	Requests int       `json:"requests"`
	Dropped  uint64    `json:"dropped"`
}

func (a *api) bans(w http.ResponseWriter, r *http.Request) {
	out := []banView{}
	if a.Bans != nil {
		for _, b := range a.Bans.Bans() {
			out = append(out, banView{b.IP.String(), b.Since.UTC(), b.Until.UTC(), b.Requests, b.Dropped})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *api) unban(w http.ResponseWriter, r *http.Request) {
	ip, err := netip.ParseAddr(r.PathValue("ip"))
	if err != nil {
		fail(w, http.StatusBadRequest, "not an IP address: "+r.PathValue("ip"))
		return
	}
	if a.Bans == nil || !a.Bans.Unban(ip) {
		fail(w, http.StatusNotFound, ip.String()+" is not banned")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"unbanned": ip.String()})
}
