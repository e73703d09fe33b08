package store

import "errors"

// ErrNewerSchema: the file's schema version is above the last migration
// this binary knows; it was written by a newer sipanchor and is left alone.
var ErrNewerSchema = errors.New("store was written by a newer sipanchor")
