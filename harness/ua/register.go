package ua

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// regState is what successive REGISTERs of a UA share (RFC 3261 section
// 10.2: one Call-ID, increasing CSeq).
type regState struct {
	callID, tag string
	cseq        uint32
}

// Register binds the UA's Contact (its local address) to its AoR for
// expires, answering one 401/407 challenge with Config.Password, and says
// what the 2xx told: the granted expiry and the Via received/rport.
func (u *UA) Register(ctx context.Context, expires time.Duration) (*Registration, error) {
	res, err := u.register(ctx, expires)
	if err != nil {
		return nil, err
	}
	return u.registration(res, expires), nil
}

// Unregister removes the UA's binding (REGISTER with Expires: 0).
func (u *UA) Unregister(ctx context.Context) error {
	_, err := u.register(ctx, 0)
	return err
}

func (u *UA) register(ctx context.Context, expires time.Duration) (*sip.Response, error) {
	res, err := u.do(ctx, u.registerRequest(expires))
	if err != nil {
		return nil, err
	}
	if (res.StatusCode == sip.StatusUnauthorized || res.StatusCode == sip.StatusProxyAuthRequired) && u.cfg.Password != "" {
		req := u.registerRequest(expires)
		if err := u.authorize(req, res); err != nil {
			return nil, err
		}
		if res, err = u.do(ctx, req); err != nil {
			return nil, err
		}
	}
	if res.StatusCode >= 300 {
		return nil, &StatusError{Code: res.StatusCode, Reason: res.Reason}
	}
	u.log.Info("registered", "expires", expires, "code", res.StatusCode)
	return res, nil
}

func (u *UA) registerRequest(expires time.Duration) *sip.Request {
	u.mu.Lock()
	u.reg.cseq++
	r := u.reg
	u.mu.Unlock()
	aor := u.aor()
	req := u.request(sip.REGISTER, sip.Uri{Scheme: "sip", Host: u.cfg.Domain}, fromHeader(aor, r.tag), toHeader(aor, ""),
		r.callID, r.cseq, nil)
	req.AppendHeader(u.contact())
	exp := sip.ExpiresHeader(uint32(expires / time.Second))
	req.AppendHeader(&exp)
	return req
}

// authorize adds the digest credentials (RFC 3261 section 22.4; MD5 and
// the others icholy/digest knows) answering res's challenge to req.
func (u *UA) authorize(req *sip.Request, res *sip.Response) error {
	in, out := "WWW-Authenticate", "Authorization"
	if res.StatusCode == sip.StatusProxyAuthRequired {
		in, out = "Proxy-Authenticate", "Proxy-Authorization"
	}
	h := res.GetHeader(in)
	if h == nil {
		return fmt.Errorf("%d without %s", res.StatusCode, in)
	}
	chal, err := digest.ParseChallenge(h.Value())
	if err != nil {
		return fmt.Errorf("%s %q: %w", in, h.Value(), err)
	}
	chal.Algorithm = strings.ToUpper(chal.Algorithm)
	cred, err := digest.Digest(chal, digest.Options{Method: string(req.Method), URI: req.Recipient.String(),
		Username: u.cfg.User, Password: u.cfg.Password, Count: 1})
	if err != nil {
		return fmt.Errorf("digest: %w", err)
	}
	req.AppendHeader(sip.NewHeader(out, cred.String()))
	return nil
}

// registration reads a 2xx to REGISTER.
func (u *UA) registration(res *sip.Response, asked time.Duration) *Registration {
	reg := &Registration{Expires: asked}
	if h := res.GetHeader("Expires"); h != nil {
		if s, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil {
			reg.Expires = time.Duration(s) * time.Second
		}
	}
	for _, h := range res.GetHeaders("Contact") {
		ct, ok := h.(*sip.ContactHeader)
		if !ok || ct.Address.Host != u.addr.Addr().String() || ct.Address.Port != int(u.addr.Port()) {
			continue
		}
		if v, ok := ct.Params.Get("expires"); ok {
			if s, err := strconv.Atoi(v); err == nil {
				reg.Expires = time.Duration(s) * time.Second
			}
		}
	}
	if v := res.Via(); v != nil {
		reg.Received, _ = netip.ParseAddr(v.Params.GetOr("received", ""))
		reg.RPort, _ = strconv.Atoi(v.Params.GetOr("rport", ""))
	}
	return reg
}
