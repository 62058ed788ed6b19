package policy

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCommunity(t *testing.T) {
	tests := []struct {
		in      string
		want    Community
		wantErr string
	}{
		{"64512:100", 64512<<16 | 100, ""},
		{"65535:0", GracefulShutdown, ""},
		{"0:0", 0, ""},
		{"65536:1", 0, "both halves must be 0..65535"},
		{"1:-1", 0, "both halves must be 0..65535"},
		{"100", 0, "write it as ASN:value"},
		{"a:b", 0, "both halves"},
		{"", 0, "write it as ASN:value"},
	}
	for _, tt := range tests {
		got, err := ParseCommunity(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.in) {
				t.Errorf("ParseCommunity(%q) error = %v, want one naming the value and %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseCommunity(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if got.String() != tt.in {
			t.Errorf("String() = %q, want %q", got.String(), tt.in)
		}
	}
}

func TestParseLargeCommunity(t *testing.T) {
	got, err := ParseLargeCommunity("64512:1:4294967295")
	if diff := cmp.Diff(LargeCommunity{64512, 1, 4294967295}, got); err != nil || diff != "" {
		t.Fatalf("err %v, diff %s", err, diff)
	}
	for _, bad := range []string{"1:2", "1:2:3:4", "1:2:4294967296", "x:1:2"} {
		if _, err := ParseLargeCommunity(bad); err == nil {
			t.Errorf("ParseLargeCommunity(%q) accepted", bad)
		}
	}
}

func TestConfigAttributes(t *testing.T) {
	med := uint32(10)
	c := Config{Communities: []string{"64512:100", "bad"}, LargeCommunities: []string{"1:2:3", "1:2"}, MED: &med, Prepend: 11}
	_, err := c.Attributes()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"policy.communities[1]", "policy.largeCommunities[1]", "policy.prepend: 11"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	c = Config{Communities: []string{"64512:100"}, MED: &med, Prepend: 2}
	a, err := c.Attributes()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Attributes{Communities: []Community{64512<<16 | 100}, MED: &med}, a); diff != "" {
		t.Errorf("attributes (-want +got):\n%s", diff)
	}
}

func FuzzParseCommunity(f *testing.F) {
	for _, s := range []string{"64512:100", "65535:0", "1:2:3", ":", "99999999999:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if c, err := ParseCommunity(s); err == nil {
			if back, err := ParseCommunity(c.String()); err != nil || back != c {
				t.Fatalf("round trip of %q: %v %v", s, back, err)
			}
		}
		if c, err := ParseLargeCommunity(s); err == nil {
			if back, err := ParseLargeCommunity(c.String()); err != nil || back != c {
				t.Fatalf("round trip of %q: %v %v", s, back, err)
			}
		}
	})
}
