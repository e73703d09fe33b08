package control

import (
	"errors"
	"io"
	"net/http"
	"strconv"
)

// Request size limits. The largest body the API takes (an update) is a
// few hundred bytes; nothing needs long header lines.
const (
	maxBody = 64 << 10
	// MaxHeaderBytes is for http.Server.MaxHeaderBytes: longer request
	// headers get 431.
	MaxHeaderBytes = 16 << 10
)

var errBodyTooLarge = errors.New("request body too large (limit " + strconv.Itoa(maxBody>>10) + " KiB)")

// withBodyLimit refuses a body over maxBody with 413: at once when its
// Content-Length says so, else when a handler reads past the limit
// (readBody).
func withBodyLimit(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxBody {
			w.Header().Set("Connection", "close") // the rest is not read
			fail(w, http.StatusRequestEntityTooLarge, errBodyTooLarge.Error())
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		h.ServeHTTP(w, r)
	})
}

// readBody reads a request body; errBodyTooLarge past maxBody.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return nil, errBodyTooLarge
	}
	return b, err
}

// bodyStatus is the status for a failure to read or parse a body.
func bodyStatus(err error) int {
	if errors.Is(err, errBodyTooLarge) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}
