package speaker

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestInstanceLock(t *testing.T) {
	// A name of its own: the test must not collide with a vipcast running
	// on this machine, nor with a parallel run of itself.
	name := fmt.Sprintf("@vipcast-test/%s/%d", t.Name(), os.Getpid())
	first, err := LockInstance(name, "pid 1 vipcast test config /etc/vipcast/a.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = LockInstance(name, "second", nil)
	var re *RunningError
	if !errors.As(err, &re) {
		first.Close()
		t.Fatalf("second lock: %v, want a *RunningError", err)
	}
	if re.PID != int32(os.Getpid()) {
		t.Errorf("holder pid %d, want %d (SO_PEERCRED)", re.PID, os.Getpid())
	}
	if re.Info != "pid 1 vipcast test config /etc/vipcast/a.yaml" {
		t.Errorf("holder info %q", re.Info)
	}
	for _, want := range []string{fmt.Sprintf("pid %d", os.Getpid()), "a.yaml", name, "already runs"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := LockInstance(name, "third", nil)
	if err != nil {
		t.Fatalf("lock after Close: %v", err)
	}
	again.Close()
}
