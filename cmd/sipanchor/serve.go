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
	"os"
	"os/signal"
	"syscall"
	"time"

	"sipanchor/config"
	"sipanchor/sip"

	_ "modernc.org/sqlite"
)

func cmdServe(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "", "config file (TOML), read over the embedded defaults")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(*path)
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

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// openDB opens the SQLite store in WAL mode: readers do not block the
// writer, and a second process (sipanchor ctl) can use it alongside.
func openDB(path string) (*sql.DB, error) {
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=synchronous(NORMAL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

func serve(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	db, err := openDB(cfg.Store.Path)
	if err != nil {
		return err
	}
	defer db.Close()
	p, err := sip.New(ctx, sip.Options{Config: cfg, DB: db, Log: log})
	if err != nil {
		return err
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
		api = &http.Server{Handler: newAPI(cfg, p, log), ReadHeaderTimeout: 5 * time.Second}
		log.Info("api listening", "addr", ln.Addr().String())
		go func() {
			if err := api.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("api stopped", "err", err)
			}
		}()
	}
	log.Info("sipanchor started", "version", version, "listen", p.Addrs(), "store", cfg.Store.Path)
	err = p.Serve(ctx)
	if api != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = api.Shutdown(sctx)
	}
	log.Info("sipanchor stopped")
	return err
}
