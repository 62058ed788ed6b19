package apiserver_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vipcast/vipcast/speaker"
	apiv1 "github.com/vipcast/vipcast/speaker/api/v1"
	"github.com/vipcast/vipcast/speaker/apiserver/apitest"
)

// FuzzDrainReason sends any reason through the real API: one within the
// limit is recorded exactly (status and state file), a longer one is
// InvalidArgument and changes nothing.
func FuzzDrainReason(f *testing.F) {
	for _, s := range []string{"kernel upgrade", "", strings.Repeat("x", speaker.MaxDrainReason), strings.Repeat("x", speaker.MaxDrainReason+1), "x" + strings.Repeat("é", 200), "\x00\n\x1b[2J", "ticket #42: ✓"} {
		f.Add(s)
	}
	e := apitest.Start(f, apitest.Options{Healthy: true})
	c := dialSocket(f, e)
	f.Fuzz(func(t *testing.T, reason string) {
		if !utf8.ValidString(reason) {
			return // not a proto3 string: the client refuses to send it
		}
		_, err := c.Drain(ctx(t), &apiv1.DrainRequest{Reason: reason})
		if len(reason) > speaker.MaxDrainReason {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("%d-byte reason: %v, want InvalidArgument", len(reason), err)
			}
			if st := getStatus(t, c); st.Drained {
				t.Fatal("drained by a refused request")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		st := getStatus(t, c)
		saved, rerr := speaker.ReadState(e.Config.StateFile)
		if !st.Drained || st.DrainReason != reason || rerr != nil || saved.Reason != reason {
			t.Fatalf("reason %q: status %v %q, state file %q %v", reason, st.Drained, st.DrainReason, saved.Reason, rerr)
		}
		if _, err := c.Undrain(ctx(t), &apiv1.UndrainRequest{Reason: reason}); err != nil {
			t.Fatal(err)
		}
	})
}
