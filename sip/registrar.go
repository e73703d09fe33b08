package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"sipanchor/config"

	"github.com/emiago/sipgo/sip"
)

// registrar implements RFC 3261 §10.3 over a Location.
type registrar struct {
	loc  *Location
	cfg  config.Registrar
	auth *authenticator // nil: no authentication
	log  *slog.Logger
	now  func() time.Time
}

// regSource is where a REGISTER came from, for NAT traversal.
type regSource struct {
	addr      netip.AddrPort
	transport string // "udp" or "tcp"
	local     string // listener key
}

var (
	errOutOfOrder      = errors.New("out-of-order REGISTER")
	errTooManyContacts = errors.New("too many contacts")
)

// allowed reports whether a REGISTER from addr may be processed at all:
// [registrar] allow_networks, when set, lists where REGISTERs may come
// from. Without it and without auth anyone could register, or remove,
// anyone's contacts.
func (r *registrar) allowed(addr netip.Addr) bool {
	if len(r.cfg.AllowPrefixes) == 0 {
		return true
	}
	a := addr.Unmap()
	return slices.ContainsFunc(r.cfg.AllowPrefixes, func(p netip.Prefix) bool { return p.Contains(a) })
}

// live counts the bindings that have not expired at now.
func live(bs []*Binding, now time.Time) int {
	n := 0
	for _, b := range bs {
		if b.Expires.After(now) {
			n++
		}
	}
	return n
}

// register processes a REGISTER for a domain we serve and returns the
// response to send.
func (r *registrar) register(ctx context.Context, req *sip.Request, src regSource) *sip.Response {
	to := req.To()
	if to.Address.User == "" || to.Address.Host == "" {
		return sip.NewResponseFromRequest(req, sip.StatusNotFound, "Address-of-record Not Valid", nil)
	}
	aor := aorOf(to.Address)
	if !r.allowed(src.addr.Addr()) {
		r.log.Warn("REGISTER from outside registrar.allow_networks refused", "aor", aor, "peer", src.addr.String(), "call_id", string(*req.CallID()))
		return sip.NewResponseFromRequest(req, sip.StatusForbidden, "Forbidden", nil)
	}
	if r.auth != nil {
		if res := r.auth.check(ctx, req, to.Address.User, strings.ToLower(to.Address.Host), false); res != nil {
			return res
		}
	}

	var contacts []*sip.ContactHeader
	for _, h := range req.GetHeaders("Contact") {
		if c, ok := h.(*sip.ContactHeader); ok {
			contacts = append(contacts, c)
		}
	}
	defExpires := -1
	if h := req.GetHeader("Expires"); h != nil {
		n, err := strconv.Atoi(strings.TrimSpace(h.Value()))
		if err != nil || n < 0 {
			return sip.NewResponseFromRequest(req, sip.StatusBadRequest, "Bad Expires", nil)
		}
		defExpires = n
	}
	callID := string(*req.CallID())
	cseq := req.CSeq().SeqNo
	now := r.now()

	wildcard := slices.ContainsFunc(contacts, func(c *sip.ContactHeader) bool { return c.Address.Wildcard })
	var bs []Binding
	var err error
	switch {
	case len(contacts) == 0:
		bs = r.loc.Lookup(aor, now)
	case wildcard:
		// RFC 3261 §10.3 step 6: "*" only alone and with Expires: 0.
		if len(contacts) != 1 || defExpires != 0 {
			return sip.NewResponseFromRequest(req, sip.StatusBadRequest, "Invalid Wildcard Contact", nil)
		}
		bs, err = r.loc.update(ctx, aor, func(cur []*Binding) ([]*Binding, error) {
			for _, b := range cur {
				if b.CallID == callID && cseq <= b.CSeq {
					return nil, errOutOfOrder
				}
			}
			return nil, nil
		})
		if err == nil {
			r.log.Info("unregistered", "aor", aor, "contact", "*", "call_id", callID)
		}
	default:
		type change struct {
			contact string
			expires int
			q       float64
		}
		var changes []change
		for _, c := range contacts {
			exp := defExpires
			if v, ok := c.Params.Get("expires"); ok {
				n, perr := strconv.Atoi(v)
				if perr != nil || n < 0 {
					return sip.NewResponseFromRequest(req, sip.StatusBadRequest, "Bad Contact Expires", nil)
				}
				exp = n
			}
			if exp < 0 {
				// The default is kept within the bounds, whatever they are.
				exp = max(min(r.cfg.DefaultExpires, r.cfg.MaxExpires), r.cfg.MinExpires)
			}
			if exp > 0 && exp < r.cfg.MinExpires {
				res := sip.NewResponseFromRequest(req, sip.StatusIntervalToBrief, "Interval Too Brief", nil)
				res.AppendHeader(sip.NewHeader("Min-Expires", strconv.Itoa(r.cfg.MinExpires)))
				return res
			}
			exp = min(exp, r.cfg.MaxExpires)
			q := 1.0
			if v, ok := c.Params.Get("q"); ok {
				f, perr := strconv.ParseFloat(v, 64)
				if perr != nil || f < 0 || f > 1 {
					return sip.NewResponseFromRequest(req, sip.StatusBadRequest, "Bad Contact q", nil)
				}
				q = f
			}
			changes = append(changes, change{contact: c.Address.String(), expires: exp, q: q})
		}
		ua := ""
		if h := req.GetHeader("User-Agent"); h != nil {
			ua = h.Value()
		}
		bs, err = r.loc.update(ctx, aor, func(cur []*Binding) ([]*Binding, error) {
			had := live(cur, now)
			for _, ch := range changes {
				i := slices.IndexFunc(cur, func(b *Binding) bool { return b.Contact == ch.contact })
				if i >= 0 && cur[i].CallID == callID && cseq <= cur[i].CSeq {
					return nil, errOutOfOrder
				}
				if ch.expires == 0 {
					if i >= 0 {
						cur = slices.Delete(cur, i, i+1)
					}
					continue
				}
				b := &Binding{
					AOR: aor, Contact: ch.contact, Expires: now.Add(time.Duration(ch.expires) * time.Second),
					Q: ch.q, CallID: callID, CSeq: cseq, Received: src.addr, Transport: src.transport,
					Local: src.local, UserAgent: ua, NAT: behindNAT(ch.contact, src),
				}
				if i >= 0 {
					cur[i] = b
				} else {
					cur = append(cur, b)
				}
			}
			// A set already over the bound (max_contacts lowered) may still
			// be refreshed or shrunk, never grown.
			if n := live(cur, now); n > r.cfg.MaxContacts && n > had {
				return nil, errTooManyContacts
			}
			return cur, nil
		})
		if err == nil {
			for _, ch := range changes {
				if ch.expires == 0 {
					r.log.Info("unregistered", "aor", aor, "contact", ch.contact, "call_id", callID)
				} else {
					r.log.Info("registered", "aor", aor, "contact", ch.contact, "expires", ch.expires,
						"received", src.addr.String(), "transport", src.transport, "nat", behindNAT(ch.contact, src), "call_id", callID)
				}
			}
		}
	}
	if errors.Is(err, errTooManyContacts) {
		r.log.Info("REGISTER refused: too many contacts", "aor", aor, "max_contacts", r.cfg.MaxContacts, "call_id", callID)
		// 403, not Kamailio's 503: retrying elsewhere or later will not help.
		return sip.NewResponseFromRequest(req, sip.StatusForbidden, "Too Many Contacts", nil)
	}
	if errors.Is(err, errOutOfOrder) {
		return sip.NewResponseFromRequest(req, sip.StatusInternalServerError, "Out Of Order CSeq", nil)
	}
	if err != nil {
		r.log.Error("location write failed", "aor", aor, "call_id", callID, "err", err)
		return sip.NewResponseFromRequest(req, sip.StatusInternalServerError, "Location Store Error", nil)
	}

	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	for _, b := range bs {
		left := int(b.Expires.Sub(now).Round(time.Second) / time.Second)
		res.AppendHeader(sip.NewHeader("Contact", fmt.Sprintf("<%s>;expires=%d", b.Contact, max(left, 0))))
	}
	res.AppendHeader(sip.NewHeader("Date", now.UTC().Format(time.RFC1123)))
	return res
}

// aorOf is the address-of-record key of a URI: user@host, host lower-case.
func aorOf(u sip.Uri) string {
	return u.User + "@" + strings.ToLower(u.Host)
}

// behindNAT reports whether a contact cannot be reached at the address it
// names: it differs from where the REGISTER came from, or it came over TCP
// (a TCP client is reached over its own connection).
func behindNAT(contact string, src regSource) bool {
	if src.transport == "tcp" {
		return true
	}
	var u sip.Uri
	if err := sip.ParseUri(contact, &u); err != nil {
		return true
	}
	a, err := netip.ParseAddr(u.Host)
	if err != nil {
		return true
	}
	port := u.Port
	if port == 0 {
		port = 5060
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port)) != src.addr
}
