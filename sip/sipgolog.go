package sip

import (
	"context"
	"log/slog"
)

// dropAttrs is a slog handler for sipgo's logs: a minimum level, and no
// "data" attribute (whole messages, possibly 64 KiB of junk).
type dropAttrs struct {
	h   slog.Handler
	min slog.Level
}

func (d dropAttrs) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= d.min && d.h.Enabled(ctx, l)
}

func (d dropAttrs) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "data" {
			out.AddAttrs(a)
		}
		return true
	})
	return d.h.Handle(ctx, out)
}

func (d dropAttrs) WithAttrs(as []slog.Attr) slog.Handler {
	return dropAttrs{d.h.WithAttrs(as), d.min}
}

func (d dropAttrs) WithGroup(name string) slog.Handler { return dropAttrs{d.h.WithGroup(name), d.min} }
