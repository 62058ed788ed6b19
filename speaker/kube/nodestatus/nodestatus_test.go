package nodestatus

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func sample() Status {
	at := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	return Status{Node: "cp1", Version: "v1", Advertised: true,
		VIPs:      []VIP{{Prefix: "203.0.113.10/32", Advertised: true, Announce: true, Reason: "healthy", Since: at}},
		LastProbe: &Probe{At: at, OK: true, Reason: "ok", Latency: Duration(1500 * time.Microsecond)}, OKRun: 3,
		Sessions: []Session{{Peer: "192.0.2.1", ASN: 64512, State: "established", Since: at}}}
}

func TestParse(t *testing.T) {
	good, err := sample().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(good)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(sample(), got); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
	for _, tc := range []struct{ in, want string }{
		{"", "not vipcast's status JSON: EOF"},
		{"{}", "no node name"},
		{`[]`, "not vipcast's status JSON"},
		{`{"node":"x"} {}`, "data after the JSON object"},
		{`{"node":"x"}]`, "data after the JSON object"},
		{`{"node":"x"} x`, "data after the JSON object"},
		{`{"node":"x","lastProbe":{"latency":"1x"}}`, "duration: time: unknown unit"},
		{`{"node":"x","vips":[{"since":"yesterday"}]}`, "not vipcast's status JSON"},
		{`{"node":"x","okRun":"3"}`, "not vipcast's status JSON"},
		{`{"node":"` + strings.Repeat("x", MaxBytes) + `"}`, "over the 16384 limit"},
	} {
		_, err := Parse(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), Annotation+": ") {
			t.Errorf("Parse(%.40q) = %v, want an error naming %s containing %q", tc.in, err, Annotation, tc.want)
		}
	}
	if _, err := Parse(`{"node":"x"}` + " \n\t"); err != nil {
		t.Errorf("trailing white space: %v", err)
	}
}

func TestClip(t *testing.T) {
	for _, in := range []string{"", "ok", strings.Repeat("é", MaxString), strings.Repeat("a", MaxString+1), "bad \xff utf8"} {
		out := Clip(in)
		if len(out) > MaxString || !utf8Valid(out) || (len(in) <= MaxString && in == strings.ToValidUTF8(in, "?") && out != in) {
			t.Errorf("Clip(%.20q) = %.20q (%d bytes)", in, out, len(out))
		}
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\x00") == s }

func FuzzParse(f *testing.F) {
	good, _ := sample().Marshal()
	for _, s := range []string{good, "", "{}", `{"node":"x"}`, `{"node":"x","lastProbe":{"latency":"1x"}}`, `{"node":"x"} {}`, `{"node":"x"}]`, `[]`,
		`{"node":"x","vips":[{"since":"yesterday"}]}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		st, err := Parse(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), Annotation+": ") {
				t.Errorf("error does not name the annotation: %v", err)
			}
			return
		}
		if st.Node == "" {
			t.Error("accepted a status without a node")
		}
		if len(s) > MaxBytes {
			t.Errorf("accepted %d bytes, over MaxBytes", len(s))
		}
		if rest := strings.TrimSpace(s[strings.LastIndexByte(s, '}')+1:]); rest != "" {
			t.Errorf("accepted %q after the object", rest)
		}
		raw, err := st.Marshal()
		if err != nil {
			return // over the limit once re-encoded (escaping): fine
		}
		back, err := Parse(raw)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", raw, err)
		}
		if d := cmp.Diff(st, back); d != "" {
			t.Errorf("round trip (-want +got):\n%s", d)
		}
	})
}
