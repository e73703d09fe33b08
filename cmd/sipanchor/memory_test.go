package main

import (
	"testing"
	"time"
)

// fakeHeap is a heap the releaser reads and frees: free collects down to
// live and counts a collection.
type fakeHeap struct {
	heapReading
	live  uint64
	frees int
}

func (h *fakeHeap) read() heapReading { return h.heapReading }
func (h *fakeHeap) free() {
	h.frees++
	h.resident = h.live
	h.gcs++
}

// TestReleaserAfterAFlood: an idle heap is left alone; a heap a flood grew
// is left alone while the runtime collects by itself (under load), then
// released once quiet, at most once per releaseGap, until it is back
// near where it was; the memory a release cannot free (still live) is
// tried again after releaseGap.
func TestReleaserAfterAFlood(t *testing.T) {
	const mb = 1 << 20
	h := &fakeHeap{heapReading: heapReading{resident: 10 * mb}, live: 10 * mb}
	r := newReleaser(h.read, h.free)
	now := time.Unix(1000, 0)
	step := func(d time.Duration) bool {
		now = now.Add(d)
		_, _, ok := r.look(now)
		return ok
	}
	if step(releaseLook) {
		t.Fatal("released an idle heap")
	}

	// The flood: the heap grows and the runtime collects.
	h.resident, h.live = 300*mb, 250*mb
	h.gcs++
	if step(releaseLook) {
		t.Fatal("released while the runtime was collecting by itself")
	}
	// Quiet: released once, what is still live stays.
	if !step(releaseLook) || h.resident != 250*mb {
		t.Fatalf("not released once quiet: frees %d, resident %d MB", h.frees, h.resident/mb)
	}
	if step(releaseLook) {
		t.Fatal("released again within releaseGap")
	}
	// The flood's transactions end: the next release after the gap takes
	// the heap back.
	h.live = 12 * mb
	if !step(releaseGap) || h.resident != 12*mb {
		t.Fatalf("not released after the gap: frees %d, resident %d MB", h.frees, h.resident/mb)
	}
	for range 10 {
		if step(releaseGap) {
			t.Fatalf("released a heap back near its floor (%d MB)", h.resident/mb)
		}
	}
}
