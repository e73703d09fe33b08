package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"sipanchor/config"
	"sipanchor/server"
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
	if err := server.Check(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
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

// serve runs one server until ctx ends, with the process-wide settings a
// server in a test must not make: the memory limit and the releaser.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	setMemoryLimit(cfg.Limits.Memory, log)
	s, err := server.Start(ctx, cfg, version, log)
	if err != nil {
		return err
	}
	log.Info("sipanchor started", "version", version, "listen", s.SIPAddrs(), "store", cfg.Store.Path)
	relCtx, stopReleaser := context.WithCancel(ctx)
	released := make(chan struct{})
	go func() { newReleaser(readHeap, debug.FreeOSMemory).run(relCtx, log); close(released) }()
	defer func() { stopReleaser(); <-released }()
	<-s.Done()
	return s.Err()
}
