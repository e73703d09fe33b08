package media

// TimeoutMode says whose silence ends a call once its media has flowed.
type TimeoutMode uint8

const (
	// TimeoutUnknown is the zero value; the relay treats it as TimeoutAll.
	TimeoutUnknown TimeoutMode = iota
	// TimeoutAll ends a call when no packet has come from either side for
	// SessionTimeout: any packet keeps the whole call up (rtpproxy's
	// per-session timer).
	TimeoutAll
	// TimeoutAny ends a call when one side that its SDP says should send
	// has been silent for SessionTimeout: it catches one-way failures (a
	// dead NAT mapping, a phone that crashed mid-call).
	TimeoutAny
)

func (m TimeoutMode) String() string {
	switch m {
	case TimeoutAll:
		return "all"
	case TimeoutAny:
		return "any"
	}
	return "unknown"
}
