package speaker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
	"unicode/utf8"
)

// State is what vipcast keeps across restarts: an operator's drain.
type State struct {
	Drained bool      `json:"drained"`
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at,omitzero"`
}

// MaxDrainReason is the longest drain reason in bytes. The reason travels
// in every status answer and Event and is kept in the state file: a
// megabyte of it broke `vipcast status` (gRPC's 4 MB message limit) and
// stayed broken across restarts.
const MaxDrainReason = 256

// CheckDrainReason says why reason cannot be recorded, or nil.
func CheckDrainReason(reason string) error {
	if len(reason) > MaxDrainReason {
		return fmt.Errorf("reason: %d bytes is longer than %d; shorten it (a ticket number or a few words)", len(reason), MaxDrainReason)
	}
	return nil
}

// truncateReason cuts reason to MaxDrainReason bytes without splitting a
// UTF-8 sequence.
func truncateReason(reason string) string {
	if len(reason) <= MaxDrainReason {
		return reason
	}
	cut := MaxDrainReason
	for cut > 0 && !utf8.RuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut]
}

// ReadState reads the state file; a missing file is the zero State. A
// reason longer than MaxDrainReason (written by an older vipcast) is
// truncated; use readState to learn that it was.
func ReadState(path string) (State, error) {
	st, _, err := readState(path)
	return st, err
}

func readState(path string) (st State, truncated bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, false, nil
	}
	if err != nil {
		if fi, serr := os.Stat(path); serr == nil && fi.IsDir() {
			return st, false, fmt.Errorf("state file %s is a directory; remove it (rmdir) or set api.stateFile to a file path such as %s/state.json", path, path)
		}
		return st, false, fmt.Errorf("read state file: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return State{}, false, fmt.Errorf("state file %s: %v; fix or delete it (it only records a drain)", path, err)
	}
	if r := truncateReason(st.Reason); r != st.Reason {
		st.Reason, truncated = r, true
	}
	return st, truncated, nil
}

// WriteState replaces the state file atomically: a temporary file in the
// same directory, synced, then renamed over the old one. The directory is
// created (0750) if needed.
func WriteState(path string, st State) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("state file %s is a directory; remove it (rmdir) or set api.stateFile to a file path such as %s/state.json", path, path)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("state file directory: %w", err)
	}
	b, err := encodeState(st)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".state-*.json")
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write state file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync state file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write state file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replace state file: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // make the rename durable; best effort
		d.Close()
	}
	return nil
}

// encodeState is the state file's content.
func encodeState(st State) ([]byte, error) {
	b, err := json.MarshalIndent(st, "", "  ")
	return append(b, '\n'), err
}

// PersistError says a drain or undrain is in effect but was not written to
// the state file, so it would not survive a restart.
type PersistError struct{ Err error }

func (e *PersistError) Error() string {
	return fmt.Sprintf("in effect, but not saved (it will not survive a restart of vipcast): %v", e.Err)
}

func (e *PersistError) Unwrap() error { return e.Err }

// SetDrainedReason is SetDrained with the operator's reason, recorded in
// the transition's detail and in Status.DrainReason, and saved to the state
// file (Deps.StateFile) so the drain survives a restart. If only the save
// fails, the drain is in effect and the error is a *PersistError.
func (s *Speaker) SetDrainedReason(ctx context.Context, drained bool, reason string) error {
	// One change at a time, so the file always matches the last change.
	s.drainMu.Lock()
	defer s.drainMu.Unlock()
	// The API refuses a longer reason; this keeps every other caller
	// within the bound too.
	reason = truncateReason(reason)
	req := drainReq{drained: drained, reason: reason, applied: make(chan struct{})}
	select {
	case s.drainCh <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.shutdownCh:
		return errors.New("speaker is shutting down")
	case <-s.lc.done:
		return errors.New("speaker is not running")
	}
	// Return once the loop has acted on it and recorded the status, so a
	// caller that reads Status next sees the drain (the CLI did not, under
	// load).
	select {
	case <-req.applied:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.lc.done:
	}
	s.mu.Lock()
	if drained {
		s.status.DrainReason = reason
	} else {
		s.status.DrainReason = ""
	}
	s.mu.Unlock()
	if s.cfg.StateFile == "" {
		return nil
	}
	st := State{Drained: drained, At: s.d.Now().UTC()}
	if drained {
		st.Reason = reason
	}
	if err := WriteState(s.cfg.StateFile, st); err != nil {
		s.d.Log.Error("saving the drain state", "err", err, "drained", drained)
		return &PersistError{Err: err}
	}
	return nil
}

type drainReq struct {
	drained bool
	reason  string
	applied chan struct{} // closed by the loop once the change is applied and recorded
}
