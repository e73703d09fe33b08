package sip

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// staticRoute is one [[route]]: requests whose "sip:user@host" matches the
// glob go to the next hop, Request-URI unchanged (like Kamailio's $du).
type staticRoute struct {
	match string
	to    sip.Uri
}

// errNoTLS: a next hop asks for TLS (sips: or transport=tls), which there
// is no transport for; config.Validate refuses such a config first.
var errNoTLS = errors.New("sips/TLS needs a tls listener, not supported yet")

func parseRoute(match, to string) (staticRoute, error) {
	var u sip.Uri
	if err := sip.ParseUri(to, &u); err != nil {
		return staticRoute{}, err
	}
	if tr, _ := u.UriParams.Get("transport"); u.IsEncrypted() || strings.EqualFold(tr, "tls") {
		return staticRoute{}, fmt.Errorf("%q: %w", to, errNoTLS)
	}
	return staticRoute{match: match, to: u}, nil
}

// matchKey is what a route's glob (path.Match) is matched against:
// "scheme:user@host" of the Request-URI, or "scheme:host" without a user;
// the host in lower case, no port and no parameters.
func matchKey(u sip.Uri) string {
	scheme := u.Scheme
	if scheme == "" {
		scheme = "sip"
	}
	if u.User == "" {
		return scheme + ":" + strings.ToLower(u.Host)
	}
	return scheme + ":" + u.User + "@" + strings.ToLower(u.Host)
}

func (p *Proxy) matchRoute(u sip.Uri) (staticRoute, bool) {
	key := matchKey(u)
	for _, r := range p.routes {
		if ok, _ := path.Match(r.match, key); ok {
			return r, true
		}
	}
	return staticRoute{}, false
}
