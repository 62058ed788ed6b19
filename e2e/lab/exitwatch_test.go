package lab

import (
	"os/exec"
	"testing"
	"time"
)

func TestWatchExit(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep: %v", err)
	}
	w, err := WatchExit(cmd.Process.Pid, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	at, err := w.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if at.Before(killed) {
		t.Errorf("exit seen %v before the kill", killed.Sub(at))
	}
	_ = cmd.Wait()

	// A process that outlives the watch.
	cmd = exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	w, err = WatchExit(cmd.Process.Pid, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Wait(); err == nil {
		t.Error("Wait on a live process after the timeout: no error")
	}
}

func TestLastResetDueTo(t *testing.T) {
	// The shape of FRR 8's `show bgp neighbors 192.0.2.13 json`.
	out := []byte(`{"192.0.2.13":{"remoteAs":64512,"bgpState":"Active","lastResetTimerMsecs":812,"lastResetDueTo":"Peer closed the session","lastResetCode":14}}`)
	got, err := lastResetDueTo(out, "192.0.2.13")
	if err != nil || got != "Peer closed the session" {
		t.Errorf("lastResetDueTo = %q, %v", got, err)
	}
	if _, err := lastResetDueTo(out, "192.0.2.11"); err == nil {
		t.Error("unknown neighbor: no error")
	}
	if _, err := lastResetDueTo([]byte("% no such neighbor"), "192.0.2.11"); err == nil {
		t.Error("not JSON: no error")
	}
}
