package server

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/netip"
	"time"

	"sipanchor/cmd/sipanchor/control"
	"sipanchor/config"
	"sipanchor/dialog"
	"sipanchor/media"
	"sipanchor/relay"
	"sipanchor/relay/ng"
)

// Check makes the checks config cannot make itself (it imports none of
// ours): relay flags, the engage rule, relay node addresses. Their errors
// name the key, as config's own do.
func Check(cfg *config.Config) error {
	_, _, _, err := relaySettings(cfg)
	return err
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

// newMedia builds the builtin relay, the rtpengine client when [relay]
// engine says so, and the dialog layer that drives them.
func (s *Server) newMedia() error {
	cfg, log := s.cfg, s.log
	caller, callee, engage, err := relaySettings(cfg)
	if err != nil {
		return err
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
	s.rl, err = media.NewRelay(media.Config{
		PortMin: cfg.Media.PortMin, PortMax: cfg.Media.PortMax, Bind: bind, Advertise: mediaAddress(cfg, bind),
		SetupTimeout: cfg.Media.SetupTimeout.Duration, SessionTimeout: cfg.Media.SessionTimeout.Duration,
		TimeoutMode: mode, RingTimeout: 4 * time.Minute, Latch: latch, Log: log,
	})
	if err != nil {
		return err
	}
	s.builtin = relay.NewBuiltin(s.rl)
	var engine relay.Engine = s.builtin
	if cfg.Relay.Engine == "rtpengine" {
		if s.client, err = s.newClient(); err != nil {
			return err
		}
		engine = s.client
	}
	s.dialogs = dialog.NewManager(engine, dialog.Config{
		Engage: engage, Caller: caller, Callee: callee, Lifetime: cfg.Relay.Lifetime.Duration, Log: log, DB: s.db,
		AckTimeout: 64 * cfg.SIP.T1.Duration,
		OnEvent:    func(e dialog.Event) { s.events.Publish(control.FromDialog(e)) },
	})
	// The builtin engine's one node disabled: new calls are not anchored.
	s.builtin.OnEnabled(func(on bool) { s.dialogs.SetDisabled(!on) })
	return nil
}

// newClient is the NG client driving the configured rtpengine sets.
func (s *Server) newClient() (*ng.Client, error) {
	cfg := s.cfg
	sets, err := relaySets(cfg, s.db)
	if err != nil {
		return nil, err
	}
	return ng.NewClient(ng.ClientConfig{Sets: sets, Timeout: cfg.Relay.Timeout.Duration, Retries: cfg.Relay.Retries,
		DisableFor: cfg.Relay.DisableTimeout.Duration, ProbeEvery: cfg.Relay.TimerInterval.Duration,
		PollEvery: cfg.Relay.PollInterval.Duration, Log: s.log, Bindings: ng.NewSQLBindings(s.db),
		OnNode: func(node string, up bool) {
			s.events.Publish(control.Event{Type: "relay.node", Node: node, Enabled: up, Time: time.Now()})
		},
		StrictSource: cfg.Media.Latch == "strict"})
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
