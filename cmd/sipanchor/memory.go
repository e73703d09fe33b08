package main

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"sipanchor/config"
)

// setMemoryLimit applies [limits] memory as Go's soft memory limit (0:
// none, the runtime's default).
func setMemoryLimit(lim config.Size, log *slog.Logger) {
	if lim > 0 {
		debug.SetMemoryLimit(int64(lim))
		b, _ := lim.MarshalText()
		log.Info("memory limit set", "limit", string(b))
	}
}

// After a flood the heap is full of what it left (requests, transactions),
// dead once their timers run out. Go collects them only at its next
// garbage collection, which comes when the heap grows again or after two
// minutes, and returns free pages to the OS slowly: RSS stays where the
// flood left it. The releaser looks every releaseLook; when the heap is
// well above the smallest it has been (twice, plus releaseSlack) and the
// runtime has not collected since the last look (the process is quiet:
// under load it collects by itself, and a release would be undone at
// once), it collects and returns every free page (debug.FreeOSMemory), at
// most once every releaseGap. An idle sipanchor is never touched; one that
// stays quiet with a large live heap (thousands of calls in progress) gets
// one collection every releaseGap, a few milliseconds of CPU.
const (
	releaseLook  = 2 * time.Second
	releaseGap   = 10 * time.Second
	releaseSlack = 16 << 20
)

// heapReading is what the releaser decides on.
type heapReading struct {
	resident uint64 // heap bytes backed by memory: objects, unused and free not yet returned
	gcs      uint64 // garbage collections completed
}

var heapSamples = []metrics.Sample{
	{Name: "/memory/classes/heap/objects:bytes"},
	{Name: "/memory/classes/heap/unused:bytes"},
	{Name: "/memory/classes/heap/free:bytes"},
	{Name: "/gc/cycles/total:gc-cycles"},
}

func readHeap() heapReading {
	s := make([]metrics.Sample, len(heapSamples))
	copy(s, heapSamples)
	metrics.Read(s)
	return heapReading{resident: s[0].Value.Uint64() + s[1].Value.Uint64() + s[2].Value.Uint64(), gcs: s[3].Value.Uint64()}
}

// releaser decides when to return memory; read and free are the runtime's
// (readHeap, debug.FreeOSMemory) but for tests.
type releaser struct {
	read  func() heapReading
	free  func()
	floor uint64    // the smallest resident heap seen after a release (or at start)
	gcs   uint64    // collections counted at the last look
	last  time.Time // the last release
}

func newReleaser(read func() heapReading, free func()) *releaser {
	h := read()
	return &releaser{read: read, free: free, floor: h.resident, gcs: h.gcs}
}

// look releases memory if it is time to, and reports the resident heap
// before and after (equal when it did not).
func (r *releaser) look(now time.Time) (before, after uint64, released bool) {
	h := r.read()
	quiet := h.gcs == r.gcs
	r.gcs = h.gcs
	if !quiet || h.resident <= 2*r.floor+releaseSlack || now.Sub(r.last) < releaseGap {
		return h.resident, h.resident, false
	}
	r.free()
	a := r.read()
	r.gcs, r.last, r.floor = a.gcs, now, min(r.floor, a.resident)
	return h.resident, a.resident, true
}

// run looks every releaseLook until ctx ends.
func (r *releaser) run(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(releaseLook)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			start := time.Now()
			if before, after, ok := r.look(now); ok {
				log.Debug("memory returned to the OS", "heap_before", before, "heap_after", after, "took_ms", time.Since(start).Milliseconds())
			}
		}
	}
}
