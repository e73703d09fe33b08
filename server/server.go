// Package server assembles one running sipanchor: its store, its media
// relay (the builtin engine, or rtpengine nodes over NG), the dialog
// layer, the SIP proxy, the HTTP API and the NG server. The binary runs
// one; the test harness may run several in one process, so nothing here
// is process-wide (sipgo's timers excepted: see sip's acquireTimers).
package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"sipanchor/cmd/sipanchor/control"
	"sipanchor/config"
	"sipanchor/dialog"
	"sipanchor/media"
	"sipanchor/relay"
	"sipanchor/relay/ng"
	"sipanchor/sip"
	"sipanchor/store"
)

// Server is one running sipanchor.
type Server struct {
	cfg     *config.Config
	log     *slog.Logger
	db      *sql.DB
	events  *control.Events
	rl      *media.Relay
	builtin *relay.Builtin
	client  *ng.Client // nil with the builtin engine
	dialogs *dialog.Manager
	proxy   *sip.Proxy
	api     *http.Server
	apiAddr string
	ngAddr  string
	ngDone  chan struct{}

	stop context.CancelFunc
	done chan struct{}
	err  error
}

// Start opens the store, builds the relay and the dialog layer, restores
// the saved dialogs, binds every listener and starts serving. It returns
// once all of them accept traffic; the server runs until ctx ends or Stop.
func Start(ctx context.Context, cfg *config.Config, version string, log *slog.Logger) (*Server, error) {
	if err := Check(cfg); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	s := &Server{cfg: cfg, log: log, stop: cancel, done: make(chan struct{}), ngDone: make(chan struct{})}
	close(s.ngDone)
	if err := s.open(runCtx, version); err != nil {
		cancel()
		s.closeAll()
		return nil, err
	}
	go s.run(runCtx)
	return s, nil
}

// open builds everything in dependency order; on an error, closeAll
// releases what was built.
func (s *Server) open(ctx context.Context, version string) error {
	cfg, log := s.cfg, s.log
	db, err := store.OpenSync(ctx, cfg.Store.Path, store.Sync(cfg.Store.Sync))
	if err != nil {
		return err
	}
	s.db = db
	s.events = control.NewEvents(cfg.API.Webhook, log)
	if err := s.newMedia(); err != nil {
		return err
	}
	if s.proxy, err = sip.New(ctx, sip.Options{Config: cfg, DB: db, Log: log, Dialogs: s.dialogs}); err != nil {
		return err
	}
	// After sip.New: a restored dialog's timers and watchers may end it at
	// once, and its BYEs need the SIP layer.
	if _, err := s.dialogs.Load(ctx); err != nil {
		s.releaseProxy()
		return fmt.Errorf("restoring dialogs: %w", err)
	}
	if err := s.startAPI(version); err != nil {
		s.releaseProxy()
		return err
	}
	if err := s.startNG(ctx); err != nil {
		s.releaseProxy()
		return err
	}
	return nil
}

// releaseProxy serves the proxy on an ended context: that closes the
// sockets it bound.
func (s *Server) releaseProxy() {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	_ = s.proxy.Serve(ended)
	s.proxy = nil
}

func (s *Server) startAPI(version string) error {
	cfg := s.cfg
	if cfg.API.Listen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", cfg.API.Listen)
	if err != nil {
		return fmt.Errorf("api listen: %w", err)
	}
	deps := control.Deps{Version: version, Token: cfg.API.Token, Proxy: s.proxy, Dialogs: s.dialogs, Relay: s.builtin, Events: s.events, Log: s.log, Bans: s.proxy, Traces: s.proxy}
	if s.client != nil {
		deps.Relay = s.client
		deps.ReloadRelays = func() (int, error) {
			sets, err := relaySets(cfg, s.db)
			if err != nil {
				return 0, err
			}
			return s.client.Reload(sets)
		}
	}
	s.api = &http.Server{Handler: control.Handler(deps), ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: control.MaxHeaderBytes}
	s.apiAddr = ln.Addr().String()
	s.log.Info("api listening", "addr", s.apiAddr)
	go func() {
		if err := s.api.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("api stopped", "err", err)
		}
	}()
	return nil
}

func (s *Server) startNG(ctx context.Context) error {
	cfg := s.cfg
	if cfg.NG.Listen == "" {
		return nil
	}
	var allow []netip.Prefix
	for _, a := range cfg.NG.Allow {
		allow = append(allow, netip.MustParsePrefix(a)) // validated by config
	}
	srv, err := ng.NewServer(s.builtin, ng.ServerConfig{Listen: netip.MustParseAddrPort(cfg.NG.Listen), Allow: allow, Log: s.log})
	if err != nil {
		return err
	}
	s.ngAddr = srv.Addr().String()
	s.log.Info("NG control protocol listening", "addr", s.ngAddr)
	s.ngDone = make(chan struct{})
	go func() { _ = srv.Serve(ctx); close(s.ngDone) }()
	return nil
}

// run serves SIP until ctx ends, then shuts everything down in order.
func (s *Server) run(ctx context.Context) {
	defer close(s.done)
	s.err = s.proxy.Serve(ctx)
	<-s.ngDone
	s.rl.Close() // ends the sessions the dialog watchers wait on
	if s.client != nil {
		s.client.Close() // likewise for calls on rtpengine nodes
	}
	s.dialogs.Shutdown() // timers stop; the dialogs stay saved for the restart
	s.dialogs.Wait()
	s.dialogs.Close() // flushes the dialog store before the database closes
	if s.api != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.api.Shutdown(sctx) // an open event stream is cut at the deadline
		cancel()
		s.api.Close()
	}
	s.closeAll()
	s.log.Info("sipanchor stopped")
}

// closeAll closes what open built, in reverse order.
func (s *Server) closeAll() {
	if s.dialogs != nil { // after a failed start; run has done this already
		s.dialogs.Shutdown()
		s.dialogs.Wait()
		s.dialogs.Close()
	}
	if s.rl != nil {
		s.rl.Close()
	}
	if s.client != nil {
		s.client.Close()
	}
	if s.events != nil {
		s.events.Close()
	}
	if s.db != nil {
		s.db.Close()
	}
}

// Stop ends the server and waits until everything it opened is closed.
// It returns what ended the SIP layer, if anything did.
func (s *Server) Stop() error {
	s.stop()
	<-s.done
	return s.err
}

// Done is closed when the server has stopped.
func (s *Server) Done() <-chan struct{} { return s.done }

// Err is why the server stopped (valid after Done).
func (s *Server) Err() error { return s.err }

// SIPAddrs lists the bound SIP listeners as "transport:ip:port" (the real
// ports, also for a listener configured with port 0).
func (s *Server) SIPAddrs() []string { return s.proxy.Addrs() }

// APIAddr is the HTTP API's bound address ("" without [api] listen).
func (s *Server) APIAddr() string { return s.apiAddr }

// NGAddr is the NG server's bound address ("" without [ng] listen).
func (s *Server) NGAddr() string { return s.ngAddr }

// Proxy is the SIP layer.
func (s *Server) Proxy() *sip.Proxy { return s.proxy }

// Dialogs is the dialog layer.
func (s *Server) Dialogs() *dialog.Manager { return s.dialogs }

// Relay is the engine the dialogs drive, as the API sees it.
func (s *Server) Relay() control.RelayEngine {
	if s.client != nil {
		return s.client
	}
	return s.builtin
}

// Config is the configuration the server runs with.
func (s *Server) Config() *config.Config { return s.cfg }
