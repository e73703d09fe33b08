package media

// estimateMOS estimates the listening quality (MOS-CQE, 1 to 4.5) of a
// stream that lost lossRatio (0..1) of its packets and arrives with
// jitterMS of interarrival jitter, by the E-model of ITU-T G.107
// simplified the common way (as VoIP monitors do, after Cole and
// Rosenbluth, "Voice over IP performance monitoring", ACM SIGCOMM CCR
// 31(2), 2001):
//
//	R     = 93.2 - Id - Ie,eff                  (G.107 defaults: Ro - Is = 93.2, A = 0)
//	d     = 2 x jitter + 10 ms                  one-way delay: a jitter buffer twice the
//	                                            jitter, plus 10 ms of codec and packetising
//	Id    = 0.024 d + 0.11 (d - 177.3) H(d - 177.3)   (H: 0 below, 1 above)
//	Ie,eff = Ie + (95 - Ie) Ppl / (Ppl / BurstR + Bpl) (G.107 eq. 7-29)
//	MOS   = 1 + 0.035 R + 7e-6 R (R - 60) (100 - R)   (G.107 Annex B, clamped)
//
// Assumptions: the codec is G.711 with packet loss concealment (Ie = 0,
// Bpl = 25.1, G.113 Appendix I) whatever the SDP said; loss is random
// (BurstR = 1); and the network delay is unknown: the relay measures no
// round trip, so d holds only what jitter adds. A long path lowers the
// real score further; a clean stream scores 4.40. It is a figure to
// compare calls and to assert bounds on, not a listening test.
func estimateMOS(lossRatio, jitterMS float64) float64 {
	return mosFromR(rFactor(lossRatio, jitterMS))
}

// rFactor is the transmission rating R of estimateMOS.
func rFactor(lossRatio, jitterMS float64) float64 {
	d := 2*jitterMS + 10
	return 93.2 - delayImpairment(d) - lossImpairment(100*lossRatio)
}

// delayImpairment is Id for a one-way delay of d ms (Cole and Rosenbluth's
// fit of G.107's Idd, with echo well cancelled).
func delayImpairment(d float64) float64 {
	id := 0.024 * d
	if d > 177.3 {
		id += 0.11 * (d - 177.3)
	}
	return id
}

// lossImpairment is Ie,eff of G.711 with PLC for ppl percent of packets
// lost at random.
func lossImpairment(ppl float64) float64 {
	const ie, bpl, burstR = 0, 25.1, 1
	return ie + (95-ie)*ppl/(ppl/burstR+bpl)
}

// mosFromR maps R to MOS as G.107 Annex B (eq. B-4) does.
func mosFromR(r float64) float64 {
	switch {
	case r <= 0:
		return 1
	case r >= 100:
		return 4.5
	}
	return 1 + 0.035*r + r*(r-60)*(100-r)*7e-6
}
