package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
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

func cmdServe(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "", "config file (TOML), read over the embedded defaults")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	log := newLogger(cfg.Log, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("sipanchor stopped", "err", err)
		return 1
	}
	return 0
}

// loadConfig is config.Load plus the checks config cannot make itself
// (it imports none of ours): relay flags, reported the same way.
func loadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if _, _, _, err := relaySettings(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

func relaySettings(cfg *config.Config) (caller, callee relay.LegFlags, engage dialog.Engage, err error) {
	if caller, err = relay.ParseFlags(cfg.Relay.CallerFlags); err != nil {
		return caller, callee, engage, cfg.KeyError("relay.caller_flags", err)
	}
	if callee, err = relay.ParseFlags(cfg.Relay.CalleeFlags); err != nil {
		return caller, callee, engage, cfg.KeyError("relay.callee_flags", err)
	}
	if engage, err = dialog.ParseEngage(cfg.Relay.Engage); err != nil {
		return caller, callee, engage, cfg.KeyError("relay.engage", err)
	}
	for i, set := range cfg.Relay.Sets {
		for _, n := range set.Nodes {
			if _, err := ng.ParseNode(n); err != nil {
				return caller, callee, engage, cfg.KeyError(fmt.Sprintf("relay.set.%d.nodes", i), err)
			}
		}
	}
	for key, f := range map[string]relay.LegFlags{"relay.caller_flags": caller, "relay.callee_flags": callee} {
		if err := f.Supported(); err != nil {
			return caller, callee, engage, cfg.KeyError(key, err)
		}
	}
	return caller, callee, engage, nil
}

// newMedia builds the builtin relay and the dialog layer from [media] and
// [relay] (already checked by loadConfig).
func newMedia(cfg *config.Config, db *sql.DB, log *slog.Logger, onEvent func(dialog.Event), onNode func(string, bool)) (*media.Relay, *relay.Builtin, *ng.Client, *dialog.Manager, error) {
	caller, callee, engage, err := relaySettings(cfg)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	bind := netip.IPv4Unspecified()
	if cfg.Media.Bind != "" {
		bind = netip.MustParseAddr(cfg.Media.Bind) // validated by config
	}
	mode := media.TimeoutAll
	if cfg.Media.TimeoutMode == "any" { // validated by config: "all" or "any"
		mode = media.TimeoutAny
	}
	latch := map[string]media.LatchMode{"strict": media.LatchStrict, "learn": media.LatchLearn, "off": media.LatchOff}[cfg.Media.Latch] // validated by config
	rl, err := media.NewRelay(media.Config{
		PortMin: cfg.Media.PortMin, PortMax: cfg.Media.PortMax, Bind: bind, Advertise: mediaAddress(cfg, bind),
		SetupTimeout: cfg.Media.SetupTimeout.Duration, SessionTimeout: cfg.Media.SessionTimeout.Duration,
		TimeoutMode: mode, RingTimeout: 4 * time.Minute, Latch: latch, Log: log,
	})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	builtin := relay.NewBuiltin(rl)
	var engine relay.Engine = builtin
	var client *ng.Client
	if cfg.Relay.Engine == "rtpengine" {
		sets, err := relaySets(cfg, db)
		if err != nil {
			rl.Close()
			return nil, nil, nil, nil, err
		}
		bindings := ng.NewSQLBindings(db)
		client, err = ng.NewClient(ng.ClientConfig{Sets: sets, Timeout: cfg.Relay.Timeout.Duration, Retries: cfg.Relay.Retries,
			DisableFor: cfg.Relay.DisableTimeout.Duration, ProbeEvery: cfg.Relay.TimerInterval.Duration,
			PollEvery: cfg.Relay.PollInterval.Duration, Log: log, OnNode: onNode, Bindings: bindings,
			StrictSource: cfg.Media.Latch == "strict"})
		if err != nil {
			rl.Close()
			return nil, nil, nil, nil, err
		}
		engine = client
	}
	d := dialog.NewManager(engine, dialog.Config{
		Engage: engage, Caller: caller, Callee: callee, Lifetime: cfg.Relay.Lifetime.Duration, Log: log, DB: db,
		AckTimeout: 64 * cfg.SIP.T1.Duration,
		OnEvent:    onEvent,
	})
	// The builtin engine's one node disabled: new calls are not anchored.
	builtin.OnEnabled(func(on bool) { d.SetDisabled(!on) })
	return rl, builtin, client, d, nil
}

// relaySets is [[relay.set]] plus the relay_nodes table.
func relaySets(cfg *config.Config, db *sql.DB) ([]ng.SetConfig, error) {
	var sets []ng.SetConfig
	for _, s := range cfg.Relay.Sets {
		sets = append(sets, ng.SetConfig{ID: s.ID, Nodes: s.Nodes})
	}
	fromDB, err := ng.LoadSets(context.Background(), db)
	if err != nil {
		return nil, err
	}
	return ng.MergeSets(sets, fromDB), nil
}

// mediaAddress is the address written into SDP: [media] advertise, else the
// SIP advertise address if it is an IP, else the bind address, else the
// first listener's, else the machine's first non-loopback IPv4 address.
func mediaAddress(cfg *config.Config, bind netip.Addr) netip.Addr {
	if a, err := netip.ParseAddr(cfg.Media.Advertise); err == nil {
		return a
	}
	host := cfg.SIP.Advertise
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a
	}
	if !bind.IsUnspecified() {
		return bind
	}
	for _, l := range cfg.Listeners {
		if !l.Addr.Addr().IsUnspecified() {
			return l.Addr.Addr()
		}
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() && ip.IsGlobalUnicast() {
					return ip.Unmap()
				}
			}
		}
	}
	return netip.MustParseAddr("127.0.0.1")
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	setMemoryLimit(cfg.Limits.Memory, log)
	db, err := store.OpenSync(ctx, cfg.Store.Path, store.Sync(cfg.Store.Sync))
	if err != nil {
		return err
	}
	defer db.Close()
	events := control.NewEvents(cfg.API.Webhook, log)
	defer events.Close()
	rl, builtin, client, dialogs, err := newMedia(cfg, db, log,
		func(e dialog.Event) { events.Publish(control.FromDialog(e)) },
		func(node string, up bool) {
			events.Publish(control.Event{Type: "relay.node", Node: node, Enabled: up, Time: time.Now()})
		})
	if err != nil {
		return err
	}
	if client != nil {
		defer client.Close()
	}
	defer rl.Close()
	p, err := sip.New(ctx, sip.Options{Config: cfg, DB: db, Log: log, Dialogs: dialogs})
	if err != nil {
		return err
	}
	// After sip.New: a restored dialog's timers and watchers may end it at
	// once, and its BYEs need the SIP layer.
	if _, err := dialogs.Load(ctx); err != nil {
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		_ = p.Serve(cancelled) // releases the SIP sockets
		return fmt.Errorf("restoring dialogs: %w", err)
	}
	var api *http.Server
	if cfg.API.Listen != "" {
		ln, err := net.Listen("tcp", cfg.API.Listen)
		if err != nil {
			cancelled, cancel := context.WithCancel(ctx)
			cancel()
			_ = p.Serve(cancelled) // releases the SIP sockets
			return fmt.Errorf("api listen: %w", err)
		}
		deps := control.Deps{Version: version, Token: cfg.API.Token, Proxy: p, Dialogs: dialogs, Relay: builtin, Events: events, Log: log, Bans: p, Traces: p}
		if client != nil {
			deps.Relay = client
			deps.ReloadRelays = func() (int, error) {
				sets, err := relaySets(cfg, db)
				if err != nil {
					return 0, err
				}
				return client.Reload(sets)
			}
		}
		api = &http.Server{Handler: control.Handler(deps), ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: control.MaxHeaderBytes}
		log.Info("api listening", "addr", ln.Addr().String())
		go func() {
			if err := api.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("api stopped", "err", err)
			}
		}()
	}
	ngDone := make(chan struct{})
	close(ngDone)
	if cfg.NG.Listen != "" {
		var allow []netip.Prefix
		for _, a := range cfg.NG.Allow {
			allow = append(allow, netip.MustParsePrefix(a)) // validated by config
		}
		srv, err := ng.NewServer(builtin, ng.ServerConfig{Listen: netip.MustParseAddrPort(cfg.NG.Listen), Allow: allow, Log: log})
		if err != nil {
			cancelled, cancel := context.WithCancel(ctx)
			cancel()
			_ = p.Serve(cancelled)
			return err
		}
		log.Info("NG control protocol listening", "addr", srv.Addr().String())
		ngDone = make(chan struct{})
		go func() { _ = srv.Serve(ctx); close(ngDone) }()
	}
	log.Info("sipanchor started", "version", version, "listen", p.Addrs(), "store", cfg.Store.Path)
	relCtx, stopReleaser := context.WithCancel(ctx)
	released := make(chan struct{})
	go func() { newReleaser(readHeap, debug.FreeOSMemory).run(relCtx, log); close(released) }()
	defer func() { stopReleaser(); <-released }()
	err = p.Serve(ctx)
	<-ngDone
	rl.Close() // ends the sessions the dialog watchers wait on
	if client != nil {
		client.Close() // likewise for calls on rtpengine nodes
	}
	dialogs.Shutdown() // timers stop; the dialogs stay saved for the restart
	dialogs.Wait()
	dialogs.Close() // flushes the dialog store before the database closes
	if api != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = api.Shutdown(sctx) // an open event stream is cut at the deadline
		api.Close()
	}
	log.Info("sipanchor stopped")
	return err
}
