package policy

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func u32(v uint32) *uint32 { return &v }

func TestWithGracefulShutdown(t *testing.T) {
	base := Attributes{Communities: []Community{100}, MED: u32(10), LocalPref: u32(200)}
	g := base.WithGracefulShutdown(GracefulShutdownConfig{Enabled: true, Wait: time.Second, LocalPref: u32(0), MED: u32(4294967295)})
	if !slices.Equal(g.Communities, []Community{100, GracefulShutdown}) || *g.LocalPref != 0 || *g.MED != 4294967295 {
		t.Errorf("graceful attributes = %+v", g)
	}
	if *base.MED != 10 || *base.LocalPref != 200 || len(base.Communities) != 1 {
		t.Errorf("base changed: %+v", base)
	}
	// Optional values unset: the normal ones stay; GSHUT is added once.
	g2 := g.WithGracefulShutdown(GracefulShutdownConfig{})
	if len(g2.Communities) != 2 || *g2.MED != 4294967295 {
		t.Errorf("second application = %+v", g2)
	}
	if GracefulShutdown.String() != "65535:0" {
		t.Errorf("GracefulShutdown = %s", GracefulShutdown)
	}
}

func TestPriority(t *testing.T) {
	tests := []struct {
		name        string
		cfg         Config
		med         *uint32
		prepend     uint8
		errContains string
	}{
		{"zero adds nothing", Config{PriorityMode: "med"}, nil, 0, ""},
		{"med from zero", Config{Priority: 2, PriorityMode: "med"}, u32(20), 0, ""},
		{"empty mode is med", Config{Priority: 1}, u32(10), 0, ""},
		{"med on top of policy.med", Config{MED: u32(5), Priority: 3, PriorityMode: "med"}, u32(35), 0, ""},
		{"med overflow", Config{MED: u32(4294967290), Priority: 1, PriorityMode: "med"}, nil, 0, "policy.priority: 1 gives MED 4294967300"},
		{"prepend", Config{Prepend: 1, Priority: 2, PriorityMode: "prepend"}, nil, 3, ""},
		{"prepend too many", Config{Prepend: 5, Priority: 6, PriorityMode: "prepend"}, nil, 0, "at most 5"},
		{"bad mode", Config{Priority: 1, PriorityMode: "weight"}, nil, 0, `policy.priorityMode: "weight" is not a choice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := tt.cfg.Attributes()
			var prepend uint8
			if err == nil {
				var e Export
				e, err = tt.cfg.Export("peers[0].policy", PeerConfig{})
				prepend = e.Normal.Prepend
			}
			if tt.errContains != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errContains) {
					t.Fatalf("err = %v, want %q", err, tt.errContains)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (a.MED == nil) != (tt.med == nil) || (a.MED != nil && *a.MED != *tt.med) || prepend != tt.prepend {
				t.Errorf("MED %v prepend %d, want %v %d", a.MED, prepend, tt.med, tt.prepend)
			}
		})
	}
}

func TestGracefulShutdownValidate(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil || !c.GracefulShutdown.Active() || c.GracefulShutdown.Wait != 3*time.Second {
		t.Fatalf("default: %+v, %v", c.GracefulShutdown, err)
	}
	c.GracefulShutdown.Wait = 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "policy.gracefulShutdown.wait") {
		t.Errorf("enabled with wait 0: %v", err)
	}
	c.GracefulShutdown.Enabled = false
	if err := c.Validate(); err != nil {
		t.Errorf("disabled with wait 0: %v", err)
	}
	c.GracefulShutdown = GracefulShutdownConfig{Enabled: true, Wait: time.Hour}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Errorf("wait 1h: %v", err)
	}
}
