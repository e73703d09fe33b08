package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"sipanchor/config"
	"sipanchor/harness/nat"
)

const natUsage = `usage: sipanchor nat --type TYPE --inside IP[,IP...] --public IP [flags]

A userspace NAT box on loopback (RFC 4787, RFC 5382), no root needed.
Inside hosts reach outside endpoint X:p at a view address V(X):p, one
view IP per outside IP, from the --view prefix; what they send leaves
from --public with the NAT type's mapping and filtering. Runs until
SIGINT or SIGTERM.

`

// natOptions are the flags of `sipanchor nat`.
type natOptions struct {
	cfg     nat.Config
	servers []netip.AddrPort
	verbose bool
}

func cmdNAT(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runNAT(ctx, args, stdout, stderr)
}

// runNAT is `sipanchor nat` until ctx ends. Bad flags exit 2.
func runNAT(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := natFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "sipanchor nat:", err)
		return 2
	}
	level := "info"
	if o.verbose {
		level = "debug"
	}
	o.cfg.Log = newLogger(config.Log{Level: level}, stderr)
	box, err := nat.New(o.cfg)
	if err != nil {
		fmt.Fprintln(stderr, "sipanchor nat:", err)
		return 2
	}
	fmt.Fprintf(stdout, "NAT box: inside %s, public %s, views in %s\n", joinAddrs(o.cfg.Inside), box.Public(), box.ViewPrefix())
	for _, s := range o.servers {
		v, err := box.View(s)
		if err != nil {
			fmt.Fprintln(stderr, "sipanchor nat: --server:", err)
			box.Close()
			return 1
		}
		fmt.Fprintf(stdout, "inside hosts reach %s at %s\n", s, v)
	}
	<-ctx.Done()
	if err := box.Close(); err != nil {
		fmt.Fprintln(stderr, "sipanchor nat:", err)
		return 1
	}
	return 0
}

func natFlags(args []string, stderr io.Writer) (natOptions, error) {
	var o natOptions
	fs := flag.NewFlagSet("nat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, natUsage)
		fs.PrintDefaults()
	}
	typ := fs.String("type", "", "NAT type: full-cone, restricted-cone, port-restricted-cone or symmetric (required)")
	inside := fs.String("inside", "", "the inside hosts' IPs, comma-separated (required)")
	public := fs.String("public", "", "the box's outside IP (required)")
	fs.DurationVar(&o.cfg.UDPTimeout, "timeout", nat.DefaultUDPTimeout, "UDP mapping timeout (refreshed by outbound packets only)")
	fs.DurationVar(&o.cfg.TCPTimeout, "tcp-timeout", nat.DefaultTCPTimeout, "TCP idle timeout")
	view := fs.String("view", "", "prefix of the view addresses, e.g. 127.77.0.0/16 (default: a free 127.X.0.0/16)")
	fs.Func("server", "an outside endpoint IP:PORT to show to the inside hosts (repeatable)", func(s string) error {
		ap, err := netip.ParseAddrPort(s)
		o.servers = append(o.servers, ap)
		return err
	})
	hairpin := fs.Bool("hairpin", false, "loop packets to the public address back inside (RFC 4787 §6)")
	noPreserve := fs.Bool("no-port-preservation", false, "never keep the inside port on the public address")
	fs.BoolVar(&o.cfg.BrokenALG, "broken-alg", false, "rewrite outbound SIP like a broken router ALG (public IP, inside ports, stale Content-Length)")
	fs.BoolVar(&o.verbose, "verbose", false, "log each mapping and view")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *typ == "" || *inside == "" || *public == "" {
		return o, errors.New("--type, --inside and --public are required (see sipanchor nat -h)")
	}
	t, err := nat.ParseType(*typ)
	if err != nil {
		return o, fmt.Errorf("--type: %w", err)
	}
	cfg := t.Config()
	cfg.UDPTimeout, cfg.TCPTimeout, cfg.BrokenALG = o.cfg.UDPTimeout, o.cfg.TCPTimeout, o.cfg.BrokenALG
	cfg.Hairpin, cfg.PortPreservation = *hairpin, !*noPreserve
	if cfg.Inside, err = parseAddrs(*inside); err != nil {
		return o, fmt.Errorf("--inside: %w", err)
	}
	if cfg.Public, err = netip.ParseAddr(*public); err != nil {
		return o, fmt.Errorf("--public: %w", err)
	}
	if *view != "" {
		if cfg.View, err = netip.ParsePrefix(*view); err != nil {
			return o, fmt.Errorf("--view: %w", err)
		}
	}
	o.cfg = cfg
	return o, nil
}

func parseAddrs(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, f := range strings.Split(s, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}
