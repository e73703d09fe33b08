package sip

import (
	"slices"
	"strconv"
	"sync"
	"time"
)

// TxBuckets are the upper bounds (seconds) of the transaction time histogram.
var TxBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Metrics counts what the proxy received and answered. The control plane
// reads it with Snapshot.
type Metrics struct {
	mu        sync.Mutex
	requests  map[string]uint64    // by method
	responses map[[2]string]uint64 // by method, status
	tx        map[string]*histogram
}

type histogram struct {
	counts []uint64 // per bucket, not cumulative; last is +Inf
	sum    float64
	n      uint64
}

func newMetrics() *Metrics {
	return &Metrics{requests: map[string]uint64{}, responses: map[[2]string]uint64{}, tx: map[string]*histogram{}}
}

// knownMethods are the methods counted by name; any other (an extension
// method anyone can make up, RFC 3261 §7.1) is counted as "other", so that
// a stranger cannot grow the counters without bound.
var knownMethods = map[string]bool{"INVITE": true, "ACK": true, "CANCEL": true, "BYE": true, "OPTIONS": true,
	"REGISTER": true, "PRACK": true, "UPDATE": true, "INFO": true, "SUBSCRIBE": true, "NOTIFY": true,
	"REFER": true, "MESSAGE": true, "PUBLISH": true}

func metricMethod(m string) string {
	if knownMethods[m] {
		return m
	}
	return "other"
}

func (m *Metrics) request(method string) {
	method = metricMethod(method)
	m.mu.Lock()
	m.requests[method]++
	m.mu.Unlock()
}

// final counts a final response sent upstream and how long its
// transaction took.
func (m *Metrics) final(method string, status int, took time.Duration) {
	method = metricMethod(method)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.responses[[2]string{method, strconv.Itoa(status)}]++
	h := m.tx[method]
	if h == nil {
		h = &histogram{counts: make([]uint64, len(TxBuckets)+1)}
		m.tx[method] = h
	}
	s := took.Seconds()
	i, _ := slices.BinarySearch(TxBuckets, s)
	h.counts[i]++
	h.sum += s
	h.n++
}

// MetricsSnapshot is a copy of the counters.
type MetricsSnapshot struct {
	Requests  map[string]uint64
	Responses map[[2]string]uint64 // method, status
	Tx        map[string]HistogramSnapshot
}

// HistogramSnapshot has cumulative bucket counts, as Prometheus wants.
type HistogramSnapshot struct {
	Cumulative []uint64 // per TxBuckets bound, then +Inf
	Sum        float64
	Count      uint64
}

// Snapshot copies the counters.
func (m *Metrics) Snapshot() MetricsSnapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := MetricsSnapshot{Requests: map[string]uint64{}, Responses: map[[2]string]uint64{}, Tx: map[string]HistogramSnapshot{}}
	for k, v := range m.requests {
		s.Requests[k] = v
	}
	for k, v := range m.responses {
		s.Responses[k] = v
	}
	for k, h := range m.tx {
		c := make([]uint64, len(h.counts))
		var run uint64
		for i, v := range h.counts {
			run += v
			c[i] = run
		}
		s.Tx[k] = HistogramSnapshot{Cumulative: c, Sum: h.sum, Count: h.n}
	}
	return s
}
