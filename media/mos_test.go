package media

import (
	"math"
	"testing"
)

// TestMOSFromR checks the R to MOS mapping of ITU-T G.107 (06/2015)
// Annex B, eq. (B-4), at the points its Figure B.1 / Table B.1 (and
// G.109's user-satisfaction bands) give: R 90 → 4.34, 80 → 4.03, 70 →
// 3.60, 60 → 3.10, 50 → 2.58, and the default 93.2 → 4.41; below 0 and
// above 100 the formula is clamped to 1 and 4.5.
func TestMOSFromR(t *testing.T) {
	for _, tc := range []struct{ r, mos float64 }{
		{93.2, 4.41}, {90, 4.34}, {80, 4.03}, {70, 3.60}, {60, 3.10}, {50, 2.58},
		{0, 1}, {-20, 1}, {100, 4.5}, {120, 4.5},
	} {
		if got := mosFromR(tc.r); math.Abs(got-tc.mos) > 0.01 { // the table rounds 4.024 to 4.03
			t.Errorf("MOS(R=%v) = %.4f, want %.2f", tc.r, got, tc.mos)
		}
	}
}

// TestImpairments checks the two impairments against hand computation
// from their formulas: Id as Cole and Rosenbluth's fit of G.107's delay
// impairment (ACM SIGCOMM CCR 31(2), 2001: Id = 0.024 d + 0.11 (d - 177.3)
// H(d - 177.3)), Ie,eff as G.107 eq. (7-29) with G.711's Ie = 0 and
// Bpl = 25.1 (G.113 Appendix I, G.711 with packet loss concealment),
// random loss (BurstR = 1).
func TestImpairments(t *testing.T) {
	for _, tc := range []struct{ d, id float64 }{
		{10, 0.24}, {100, 2.4}, {177.3, 4.2552}, {200, 4.8 + 0.11*22.7}, {400, 9.6 + 0.11*222.7},
	} {
		if got := delayImpairment(tc.d); math.Abs(got-tc.id) > 1e-9 {
			t.Errorf("Id(%v ms) = %v, want %v", tc.d, got, tc.id)
		}
	}
	for _, tc := range []struct{ ppl, ie float64 }{
		{0, 0}, {1, 95.0 / 26.1}, {2, 190 / 27.1}, {10, 950 / 35.1}, {100, 9500 / 125.1},
	} {
		if got := lossImpairment(tc.ppl); math.Abs(got-tc.ie) > 1e-9 {
			t.Errorf("Ie,eff(%v %%) = %v, want %v", tc.ppl, got, tc.ie)
		}
	}
}

// TestEstimateMOS: end to end through R = 93.2 - Id - Ie,eff with the
// one-way delay taken as 2 x jitter + 10 ms; expected values computed by
// hand (a calculator) from the same formulas, to 3 decimals.
func TestEstimateMOS(t *testing.T) {
	for _, tc := range []struct {
		name         string
		loss, jitter float64
		mos          float64
	}{
		{"clean", 0, 0, 4.405},              // d 10: R 92.96
		{"jitter 20 ms", 0, 20, 4.385},      // d 50: R 92.0
		{"jitter 100 ms", 0, 100, 4.184},    // d 210: R 84.56
		{"1 % loss", 0.01, 0, 4.322},        // R 89.32
		{"10 % loss", 0.10, 0, 3.399},       // R 65.89
		{"10 % and 30 ms", 0.10, 30, 3.327}, // d 70: R 64.45
		{"all lost", 1, 0, 1.171},           // R 17.02
	} {
		if got := estimateMOS(tc.loss, tc.jitter); math.Abs(got-tc.mos) > 0.001 {
			t.Errorf("%s: MOS %.4f (R %.2f), want %.3f", tc.name, got, rFactor(tc.loss, tc.jitter), tc.mos)
		}
	}
}
