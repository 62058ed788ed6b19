package policy

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLastResortValidate(t *testing.T) {
	on := func(l LastResortConfig) LastResortConfig { l.Enabled = true; return l }
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none: valid
	}{
		{"default", Default(), nil},
		{"off needs nothing", Config{LastResort: LastResortConfig{}}, nil},
		{"med only", Config{LastResort: on(LastResortConfig{MED: u32(4294967295)})}, nil},
		{"community only", Config{LastResort: on(LastResortConfig{Communities: []string{"64512:666"}})}, nil},
		{"nothing set", Config{LastResort: on(LastResortConfig{})}, []string{"policy.lastResort: enabled with no prepend", "set prepend (default 8)"}},
		{"prepend too long", Config{LastResort: on(LastResortConfig{Prepend: 33})}, []string{"policy.lastResort.prepend: 33 is more than 32"}},
		{"prepend priorities", Config{PriorityMode: PriorityPrepend, Priority: 1, LastResort: on(LastResortConfig{Prepend: 8})}, nil},
		{"local pref zero", Config{LastResort: on(LastResortConfig{Prepend: 1, LocalPref: u32(0)})}, []string{"policy.lastResort.localPref: 0 cannot be set"}},
		{"local pref not lower", Config{LocalPref: u32(100), LastResort: on(LastResortConfig{LocalPref: u32(100)})}, []string{"policy.lastResort.localPref: 100 is not lower than policy.localPref 100"}},
		{"med not higher", Config{MED: u32(50), LastResort: on(LastResortConfig{MED: u32(50)})}, []string{"policy.lastResort.med: 50 is not higher than policy.med 50"}},
		{"bad community", Config{LastResort: on(LastResortConfig{Prepend: 1, Communities: []string{"x"}})}, []string{"policy.lastResort.communities[0]: \"x\""}},
		{"marker refused", Config{LastResort: on(LastResortConfig{Prepend: 1, Communities: []string{"0:6743"}})}, []string{"policy.lastResort.communities[0]: 0:6743 is vipcast's internal last-resort marker"}},
		{"marker refused globally", Config{Communities: []string{"0:6743"}}, []string{"policy.communities[0]: 0:6743 is vipcast's internal"}},
		{"every problem at once", Config{MED: u32(9), LastResort: on(LastResortConfig{Prepend: 40, MED: u32(1), LocalPref: u32(0)})}, []string{"prepend: 40", "med: 1", "localPref: 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, missing %q", err, w)
				}
			}
		})
	}
}

func TestLastResortMarkerValue(t *testing.T) {
	if got := LastResortMarker.String(); got != "0:6743" {
		t.Errorf("marker = %s; the docs and tests name 0:6743", got)
	}
}

func TestWithLastResort(t *testing.T) {
	base := Attributes{Communities: []Community{100}, MED: u32(10), LocalPref: u32(200)}
	got := base.WithLastResort(LastResortConfig{Enabled: true, Prepend: 3, MED: u32(4294967295), LocalPref: u32(50), Communities: []string{"0:100", "64512:666"}})
	want := Attributes{Communities: []Community{100, 64512<<16 | 666, LastResortMarker}, MED: u32(4294967295), LocalPref: u32(50)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("WithLastResort (-want +got):\n%s", diff)
	}
	if !got.IsLastResort() || base.IsLastResort() {
		t.Errorf("IsLastResort: path %v, base %v", got.IsLastResort(), base.IsLastResort())
	}
	if diff := cmp.Diff(Attributes{Communities: []Community{100}, MED: u32(10), LocalPref: u32(200)}, base); diff != "" {
		t.Errorf("base changed (-want +got):\n%s", diff)
	}
	// Only the marker: the prepend is the session's.
	if got := (Attributes{}).WithLastResort(DefaultLastResort()); !cmp.Equal(got, Attributes{Communities: []Community{LastResortMarker}}) {
		t.Errorf("default = %+v", got)
	}
}

func TestExportLastResort(t *testing.T) {
	one := uint8(1)
	tests := []struct {
		name string
		cfg  Config
		peer PeerConfig
		want *Session
	}{
		{"off", Config{}, PeerConfig{}, nil},
		{"default: prepend, marker dropped", Default(), PeerConfig{}, &Session{ReplaceCommunities: true, Prepend: 8}},
		{"adds to the session's prepend and keeps every community but the marker",
			Config{Communities: []string{"64512:1"}, Prepend: 2, LastResort: LastResortConfig{Enabled: true, Prepend: 4, Communities: []string{"64512:666"}}},
			PeerConfig{Communities: []string{"64512:7"}, Prepend: &one},
			&Session{ReplaceCommunities: true, AddCommunities: []Community{64512<<16 | 1, 64512<<16 | 666, 64512<<16 | 7}, Prepend: 5}},
		{"the path's MED and local pref win over the peer's",
			Config{LastResort: LastResortConfig{Enabled: true, MED: u32(4294967295), LocalPref: u32(10)}},
			PeerConfig{MED: u32(5), LocalPref: u32(300)},
			&Session{ReplaceCommunities: true}},
		{"prepend priorities: from the most a healthy node can prepend",
			Config{PriorityMode: PriorityPrepend, Priority: 2, LastResort: LastResortConfig{Enabled: true, Prepend: 3}},
			PeerConfig{},
			&Session{ReplaceCommunities: true, Prepend: 13}},
		{"the peer's MED stays when the last resort sets none",
			Config{LastResort: LastResortConfig{Enabled: true, Prepend: 2}},
			PeerConfig{MED: u32(5)},
			&Session{ReplaceCommunities: true, MED: u32(5), Prepend: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := tt.cfg.Export("peers[0].policy", tt.peer)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, e.LastResort); diff != "" {
				t.Errorf("LastResort (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIBGPLastResort(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		peer PeerConfig
		want *Session
	}{
		{"off", Config{}, PeerConfig{}, nil},
		{"no prepend, half the default local pref", Default(), PeerConfig{}, &Session{ReplaceCommunities: true, LocalPref: u32(50)}},
		{"half the global local pref", Config{LocalPref: u32(300), LastResort: LastResortConfig{Enabled: true, Prepend: 4}}, PeerConfig{}, &Session{ReplaceCommunities: true, LocalPref: u32(150)}},
		{"half the peer's local pref", Default(), PeerConfig{LocalPref: u32(1)}, &Session{ReplaceCommunities: true, LocalPref: u32(1)}},
		{"the last resort's own local pref is on the path", Config{LastResort: LastResortConfig{Enabled: true, LocalPref: u32(10)}}, PeerConfig{}, &Session{ReplaceCommunities: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := tt.cfg.Export("peers[0].policy", tt.peer)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, tt.cfg.IBGP(e).LastResort); diff != "" {
				t.Errorf("LastResort (-want +got):\n%s", diff)
			}
		})
	}
}
