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
)

// State is what vipcast keeps across restarts: an operator's drain.
type State struct {
	Drained bool      `json:"drained"`
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at,omitzero"`
}

// ReadState reads the state file; a missing file is the zero State.
func ReadState(path string) (State, error) {
	var st State
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read state file: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("state file %s: %v; fix or delete it (it only records a drain)", path, err)
	}
	return st, nil
}

// WriteState replaces the state file atomically: a temporary file in the
// same directory, synced, then renamed over the old one. The directory is
// created (0750) if needed.
func WriteState(path string, st State) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("state file directory: %w", err)
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".state-*.json")
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	if _, err := f.Write(append(b, '\n')); err != nil {
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
	select {
	case s.drainCh <- drainReq{drained: drained, reason: reason}:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.shutdownCh:
		return errors.New("speaker is shutting down")
	case <-s.lc.done:
		return errors.New("speaker is not running")
	}
	s.mu.Lock()
	if drained {
		s.status.DrainReason = reason
	} else {
		s.status.DrainReason = ""
	}
	s.mu.Unlock()
	if s.d.StateFile == "" {
		return nil
	}
	st := State{Drained: drained, At: s.d.Now().UTC()}
	if drained {
		st.Reason = reason
	}
	if err := WriteState(s.d.StateFile, st); err != nil {
		s.d.Log.Error("saving the drain state", "err", err, "drained", drained)
		return &PersistError{Err: err}
	}
	return nil
}

type drainReq struct {
	drained bool
	reason  string
}
