// Package dialog will own dialog state (early/confirmed/terminated), per-branch
// legs, the engage hooks that turn SIP events into relay calls, dialog
// persistence and ending a dialog with BYEs (issue 3). Nothing lives here yet.
package dialog
