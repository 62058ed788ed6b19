package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func u8(v uint8) *uint8 { return &v }

func TestExport(t *testing.T) {
	gshut := GracefulShutdownConfig{Enabled: true, Wait: time.Second}
	gshutMED := GracefulShutdownConfig{Enabled: true, Wait: time.Second, MED: u32(4294967295), LocalPref: u32(0)}
	tests := []struct {
		name    string
		global  Config
		peer    PeerConfig
		want    Export
		wantErr []string
	}{
		{
			name:   "no peer policy: only the global prepend",
			global: Config{Communities: []string{"64512:100"}, MED: u32(5), Prepend: 2, GracefulShutdown: gshut},
			want:   Export{Normal: Session{Prepend: 2}, Shutdown: Session{Prepend: 2}},
		},
		{
			name:   "communities are added, without repeating the global ones",
			global: Config{Communities: []string{"64512:100"}, LargeCommunities: []string{"64512:1:1"}, GracefulShutdown: gshut},
			peer:   PeerConfig{Communities: []string{"64512:100", "64512:201", "64512:201"}, LargeCommunities: []string{"64512:1:1", "64512:2:1"}},
			want: Export{
				Normal:   Session{AddCommunities: []Community{64512<<16 | 201}, AddLargeCommunities: []LargeCommunity{{64512, 2, 1}}},
				Shutdown: Session{AddCommunities: []Community{64512<<16 | 201}, AddLargeCommunities: []LargeCommunity{{64512, 2, 1}}},
			},
		},
		{
			name:   "med, localPref and prepend replace the global ones",
			global: Config{MED: u32(5), LocalPref: u32(100), Prepend: 3, GracefulShutdown: gshut},
			peer:   PeerConfig{MED: u32(50), LocalPref: u32(300), Prepend: u8(0)},
			want: Export{
				Normal:   Session{MED: u32(50), LocalPref: u32(300)},
				Shutdown: Session{MED: u32(50), LocalPref: u32(300)},
			},
		},
		{
			name:   "graceful-shutdown values win during a drain",
			global: Config{GracefulShutdown: gshutMED},
			peer:   PeerConfig{MED: u32(50), LocalPref: u32(300)},
			want: Export{
				Normal:   Session{MED: u32(50), LocalPref: u32(300)},
				Shutdown: Session{},
			},
		},
		{
			name:   "priority med mode adds to the peer's MED",
			global: Config{MED: u32(5), Priority: 2, PriorityMode: PriorityMED, GracefulShutdown: gshut},
			peer:   PeerConfig{MED: u32(50)},
			want:   Export{Normal: Session{MED: u32(70)}, Shutdown: Session{MED: u32(70)}},
		},
		{
			name:   "priority prepend mode adds to the peer's prepend",
			global: Config{Prepend: 1, Priority: 2, PriorityMode: PriorityPrepend, GracefulShutdown: gshut},
			peer:   PeerConfig{Prepend: u8(3)},
			want:   Export{Normal: Session{Prepend: 5}, Shutdown: Session{Prepend: 5}},
		},
		{
			name:    "priority overflows the peer's MED",
			global:  Config{Priority: 1, GracefulShutdown: gshut},
			peer:    PeerConfig{MED: u32(4294967290)},
			wantErr: []string{"policy.priority: 1 gives MED 4294967300", "peers[1].policy.med + priority*10"},
		},
		{
			name:    "priority prepends beyond the maximum",
			global:  Config{Priority: 4, PriorityMode: PriorityPrepend, GracefulShutdown: gshut},
			peer:    PeerConfig{Prepend: u8(8)},
			wantErr: []string{"with peers[1].policy.prepend 8 gives 12 prepends"},
		},
		{
			name:   "bad values, all at once",
			global: Config{GracefulShutdown: gshut},
			peer:   PeerConfig{Communities: []string{"65535:0", "1"}, LargeCommunities: []string{"1:2"}, LocalPref: u32(0), Prepend: u8(11)},
			wantErr: []string{
				"peers[1].policy.communities[0]: 65535:0 is GRACEFUL_SHUTDOWN",
				`peers[1].policy.communities[1]: "1" is not a community`,
				`peers[1].policy.largeCommunities[0]: "1:2"`,
				"peers[1].policy.localPref: 0 cannot be set per peer",
				"peers[1].policy.prepend: 11 is more than 10",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.global.Export("peers[1].policy", tt.peer)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("Export = %+v, want an error", got)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Export (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGlobalGracefulShutdownCommunityRefused(t *testing.T) {
	c := Default()
	c.Communities = []string{"64512:1", "65535:0"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "policy.communities[1]: 65535:0 is GRACEFUL_SHUTDOWN") {
		t.Errorf("Validate = %v, want policy.communities[1] refused", err)
	}
}
