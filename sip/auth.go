package sip

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Digest authentication: RFC 3261 §22 with RFC 2617 qop=auth, MD5 and
// SHA-256 (RFC 8760). Passwords are not stored: the users table holds
// HA1 = H(user:realm:password) for each algorithm. The table is the
// store package's.

// nonceLife is how long a challenge may be answered; older nonces are
// rejected with stale=true so the UA retries without asking its user.
const nonceLife = 5 * time.Minute

// User is one row of the users table.
type User struct {
	Username, Domain, Realm string
}

// AddUser adds or replaces a user; realm is the digest realm its HA1 is for.
func AddUser(ctx context.Context, db *sql.DB, username, domain, realm, password string) error {
	if username == "" || domain == "" || realm == "" {
		return errors.New("username, domain and realm are required")
	}
	_, err := db.ExecContext(ctx, `INSERT OR REPLACE INTO users (username, domain, realm, ha1_md5, ha1_sha256) VALUES (?, ?, ?, ?, ?)`,
		username, strings.ToLower(domain), realm, ha1(md5.New, username, realm, password), ha1(sha256.New, username, realm, password))
	return err
}

// DeleteUser removes a user; it reports whether there was one.
func DeleteUser(ctx context.Context, db *sql.DB, username, domain string) (bool, error) {
	res, err := db.ExecContext(ctx, `DELETE FROM users WHERE username = ? AND domain = ?`, username, strings.ToLower(domain))
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// ListUsers lists the users table.
func ListUsers(ctx context.Context, db *sql.DB) ([]User, error) {
	rows, err := db.QueryContext(ctx, `SELECT username, domain, realm FROM users ORDER BY domain, username`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		var u User
		if err := rows.Scan(&u.Username, &u.Domain, &u.Realm); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

func ha1(h func() hash.Hash, user, realm, password string) string {
	return hexHash(h, user+":"+realm+":"+password)
}

func hexHash(h func() hash.Hash, s string) string {
	x := h()
	x.Write([]byte(s))
	return hex.EncodeToString(x.Sum(nil))
}

type authenticator struct {
	db     *sql.DB
	realm  string   // fixed realm; "" = the domain
	algs   []string // offered and accepted, e.g. SHA-256, MD5
	secret []byte   // signs nonces
	counts *nonceCounts
	log    *slog.Logger
	now    func() time.Time
}

func newAuthenticator(db *sql.DB, realm string, algs []string, log *slog.Logger) (*authenticator, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	if len(algs) == 0 {
		algs = []string{"SHA-256", "MD5"}
	}
	return &authenticator{db: db, realm: realm, algs: algs, secret: secret, counts: newNonceCounts(), log: log, now: time.Now}, nil
}

func (a *authenticator) realmFor(domain string) string {
	if a.realm != "" {
		return a.realm
	}
	return domain
}

// nonce is "<unix seconds hex>.<random hex>.<hmac>", the HMAC over the
// time, the random part and the client's source address: checkable without
// server state, unique (its nonce count starts afresh), and useless from
// another address.
func (a *authenticator) nonce(t time.Time, src string) string {
	ts := strconv.FormatInt(t.Unix(), 16) + "." + randHex(6)
	return ts + "." + a.sign(ts, src)
}

func (a *authenticator) sign(ts, src string) string {
	m := hmac.New(sha256.New, a.secret)
	m.Write([]byte(ts + "|" + src))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// nonceState: 0 valid, 1 stale (ours but old), -1 not ours (or not for
// this source); issued is when it was made.
func (a *authenticator) nonceState(n, src string) (state int, issued time.Time) {
	i := strings.LastIndexByte(n, '.')
	if i < 0 {
		return -1, issued
	}
	ts, sig := n[:i], n[i+1:]
	if !hmac.Equal([]byte(sig), []byte(a.sign(ts, src))) {
		return -1, issued
	}
	secs, _, _ := strings.Cut(ts, ".")
	sec, err := strconv.ParseInt(secs, 16, 64)
	if err != nil {
		return -1, issued
	}
	issued = time.Unix(sec, 0)
	if a.now().Sub(issued) > nonceLife {
		return 1, issued
	}
	return 0, issued
}

// sourceIP is the address a nonce is bound to: the request's source IP
// (not the port: a NAT may change it between challenge and answer).
func sourceIP(req *sip.Request) string {
	h, _, err := net.SplitHostPort(req.Source())
	if err != nil {
		return req.Source()
	}
	return h
}

// check authenticates req for user@domain. It returns nil when the
// credentials are good, else the response to send (401 for REGISTER,
// 407 when proxy is true).
func (a *authenticator) check(ctx context.Context, req *sip.Request, user, domain string, proxy bool) *sip.Response {
	realm := a.realmFor(domain)
	hdr, status, reason, challengeHdr := "Authorization", sip.StatusUnauthorized, "Unauthorized", "WWW-Authenticate"
	if proxy {
		hdr, status, reason, challengeHdr = "Proxy-Authorization", sip.StatusProxyAuthRequired, "Proxy Authentication Required", "Proxy-Authenticate"
	}
	stale := false
	src := sourceIP(req)
	for _, h := range req.GetHeaders(hdr) {
		cred, err := parseDigest(h.Value())
		if err != nil || cred["realm"] != realm {
			continue
		}
		state, issued := a.nonceState(cred["nonce"], src)
		switch state {
		case -1:
			continue
		case 1:
			stale = true
			continue
		}
		if cred["username"] != user {
			return sip.NewResponseFromRequest(req, sip.StatusForbidden, "Username Does Not Match", nil)
		}
		if a.verify(ctx, req, cred, user, domain) {
			if a.counts.accept(cred["nonce"], cred["nc"], issued, a.now()) {
				return nil
			}
			a.log.Warn("replayed digest credentials refused", "user", user, "domain", domain, "call_id", string(*req.CallID()), "peer", req.Source())
			break // challenge again, with a fresh nonce
		}
		a.log.Info("authentication failed", "user", user, "domain", domain, "call_id", string(*req.CallID()), "peer", req.Source())
		return sip.NewResponseFromRequest(req, sip.StatusForbidden, "Bad Credentials", nil)
	}
	res := sip.NewResponseFromRequest(req, status, reason, nil)
	n := a.nonce(a.now(), src)
	for _, alg := range a.algs {
		v := fmt.Sprintf(`Digest realm="%s", nonce="%s", qop="auth", algorithm=%s`, realm, n, alg)
		if stale {
			v += ", stale=true"
		}
		res.AppendHeader(sip.NewHeader(challengeHdr, v))
	}
	return res
}

func (a *authenticator) verify(ctx context.Context, req *sip.Request, cred map[string]string, user, domain string) bool {
	h, col := md5.New, "ha1_md5"
	alg := strings.ToUpper(cred["algorithm"])
	switch alg {
	case "", "MD5":
		alg = "MD5"
	case "SHA-256":
		h, col = sha256.New, "ha1_sha256"
	default:
		return false
	}
	if !slices.Contains(a.algs, alg) {
		return false // e.g. MD5 when only SHA-256 is allowed
	}
	var stored string
	err := a.db.QueryRowContext(ctx, `SELECT `+col+` FROM users WHERE username = ? AND domain = ? AND realm = ?`, user, domain, cred["realm"]).Scan(&stored)
	if err != nil {
		if !errors.Is(err, sql.ErrNoRows) {
			a.log.Error("users lookup failed", "err", err)
		}
		return false
	}
	ha2 := hexHash(h, string(req.Method)+":"+cred["uri"])
	var want string
	switch cred["qop"] {
	case "":
		want = hexHash(h, stored+":"+cred["nonce"]+":"+ha2)
	case "auth":
		want = hexHash(h, stored+":"+cred["nonce"]+":"+cred["nc"]+":"+cred["cnonce"]+":auth:"+ha2)
	default:
		return false
	}
	return subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(cred["response"]))) == 1
}

// parseDigest parses the value of an Authorization header (RFC 2617 §3.2.2):
// `Digest k=v, k="quoted", ...`. Keys are lower-cased.
func parseDigest(v string) (map[string]string, error) {
	scheme, rest, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(scheme, "Digest") {
		return nil, errors.New("not a Digest credential")
	}
	out := map[string]string{}
	s := rest
	for {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			return out, nil
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("bad digest parameter near %q", s)
		}
		key := strings.ToLower(strings.TrimSpace(s[:eq]))
		s = strings.TrimLeft(s[eq+1:], " \t")
		var val string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("unterminated quoted string")
			}
			val, s = b.String(), s[i+1:]
		} else {
			end := strings.IndexByte(s, ',')
			if end < 0 {
				end = len(s)
			}
			val, s = strings.TrimSpace(s[:end]), s[end:]
		}
		out[key] = val
	}
}
