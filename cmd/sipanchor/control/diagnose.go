package control

import (
	"time"

	"sipanchor/dialog"
	"sipanchor/relay"
)

// Diagnosis says in plain words how a call's media flows each way (the
// API's session "diagnosis"), for other faces of sipanchor: the test
// harness reports it when a media assertion fails.
func Diagnosis(info dialog.Info, streams []relay.StreamStats, now time.Time) []string {
	return diagnosis(info, streams, now)
}
