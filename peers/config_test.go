package peers

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vipcast/vipcast/policy"
)

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	empty := filepath.Join(dir, "empty")
	long := filepath.Join(dir, "long")
	for f, content := range map[string]string{pw: "s3cret\n", empty: "", long: strings.Repeat("x", 81)} {
		if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := func() Config {
		return Config{BGP: Global{ASN: 64512, RouterID: "auto"}, Peers: []Peer{{Address: "192.0.2.1", ASN: 65000}}}
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want []string // substrings, one per expected problem
	}{
		{"valid", func(*Config) {}, nil},
		{"valid with password and v6", func(c *Config) {
			c.Peers[0].PasswordFile = pw
			c.Peers = append(c.Peers, Peer{Address: "2001:db8:2::1", ASN: 65000, Families: []string{"ipv6", "ipv4"}})
		}, nil},
		{"asn zero and AS_TRANS", func(c *Config) { c.BGP.ASN = 0; c.Peers[0].ASN = 23456 }, []string{"bgp.asn: 0", "peers[0].asn: 23456 is reserved"}},
		{"router id", func(c *Config) { c.BGP.RouterID = "2001:db8::1" }, []string{`bgp.routerID: "2001:db8::1" is not an IPv4 address`}},
		{"no peers", func(c *Config) { c.Peers = nil }, []string{"peers: none configured"}},
		{"duplicate peer", func(c *Config) { c.Peers = append(c.Peers, c.Peers[0]) }, []string{"peers[1].address: 192.0.2.1 is also peers[0]"}},
		{"bad address", func(c *Config) { c.Peers[0].Address = "fe80::1%eth0" }, []string{`peers[0].address: "fe80::1%eth0" is not an IP address`}},
		{"timers", func(c *Config) {
			c.Peers[0].HoldTime = 2 * time.Second
			c.Peers[0].KeepaliveTime = 1500 * time.Millisecond
		}, []string{"peers[0].holdTime: 2s is below", "whole seconds"}},
		{"keepalive not below hold", func(c *Config) { c.Peers[0].KeepaliveTime = 9 * time.Second }, []string{"peers[0].keepaliveTime: 9s is not below holdTime 9s"}},
		{"passive needs a listener", func(c *Config) { c.Peers[0].Passive = true }, []string{"peers[0].passive: true but bgp.listenPort is 0"}},
		{"source family", func(c *Config) { c.Peers[0].SourceAddress = "2001:db8::11" }, []string{"peers[0].sourceAddress: 2001:db8::11 is not the same family"}},
		{"family", func(c *Config) { c.Peers[0].Families = []string{"l2vpn"} }, []string{`peers[0].families[0]: "l2vpn" is not a family`}},
		{"nextHopIPv6 valid", func(c *Config) {
			c.Peers[0].Families = []string{"ipv4", "ipv6"}
			c.Peers[0].NextHopIPv6 = "2001:db8:2::11"
		}, nil},
		{"nextHopIPv6 not IPv6", func(c *Config) {
			c.Peers[0].Families = []string{"ipv4", "ipv6"}
			c.Peers[0].NextHopIPv6 = "192.0.2.11"
		}, []string{`peers[0].nextHopIPv6: "192.0.2.11" is not an IPv6 address`}},
		{"nextHopIPv6 mapped", func(c *Config) {
			c.Peers[0].Families = []string{"ipv4", "ipv6"}
			c.Peers[0].NextHopIPv6 = "::ffff:192.0.2.11"
		}, []string{`peers[0].nextHopIPv6: "::ffff:192.0.2.11" is not an IPv6 address`}},
		{"nextHopIPv6 link-local", func(c *Config) {
			c.Peers[0].Families = []string{"ipv4", "ipv6"}
			c.Peers[0].NextHopIPv6 = "fe80::11"
		}, []string{"peers[0].nextHopIPv6: fe80::11 is not a global unicast address"}},
		{"nextHopIPv6 without the ipv6 family", func(c *Config) { c.Peers[0].NextHopIPv6 = "2001:db8:2::11" }, []string{"peers[0].nextHopIPv6: 2001:db8:2::11 is set but the session carries no IPv6 routes (families [ipv4])"}},
		{"bfd strict", func(c *Config) { c.Peers[0].BFD = BFDConfig{Enabled: true, Strict: true} }, nil},
		{"bfd strict without bfd", func(c *Config) { c.Peers[0].BFD.Strict = true }, []string{"peers[0].bfd.strict: true but bfd.enabled is false"}},
		{"password files", func(c *Config) {
			c.Peers[0].PasswordFile = empty
			c.Peers = append(c.Peers, Peer{Address: "192.0.2.2", ASN: 65000, PasswordFile: long}, Peer{Address: "192.0.2.3", ASN: 65000, PasswordFile: filepath.Join(dir, "missing")})
		}, []string{"password file is empty", "longer than 80 bytes", "no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.mod(&c)
			err := c.Validate()
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
				if strings.Contains(got[i], "s3cret") {
					t.Errorf("problem %d leaks the password", i)
				}
			}
		})
	}
}

func TestWithDefaults(t *testing.T) {
	c := Config{BGP: Global{ASN: 64512}, Peers: []Peer{{Address: "192.0.2.1", ASN: 65000}, {Address: "2001:db8::1", ASN: 65000, HoldTime: 30 * time.Second}}}
	got := c.WithDefaults().Peers
	want := []Peer{
		{Address: "192.0.2.1", ASN: 65000, LocalASN: 64512, Port: 179, HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second, ConnectRetry: 5 * time.Second, Families: []string{"ipv4"}, MaxPrefixes: DefaultMaxPrefixes},
		{Address: "2001:db8::1", ASN: 65000, LocalASN: 64512, Port: 179, HoldTime: 30 * time.Second, KeepaliveTime: 10 * time.Second, ConnectRetry: 5 * time.Second, Families: []string{"ipv6"}, MaxPrefixes: DefaultMaxPrefixes},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("WithDefaults (-want +got):\n%s", diff)
	}
	if c.Peers[0].Port != 0 {
		t.Error("WithDefaults modified its receiver")
	}
}

// An iBGP router drops a path carrying its own ASN: the last resort lowers
// the local preference there instead of prepending; eBGP sessions prepend.
func TestParseLastResortIBGP(t *testing.T) {
	cfg := Config{BGP: Global{ASN: 64512, RouterID: "192.0.2.11"}, Peers: []Peer{
		{Address: "192.0.2.1", ASN: 64512},
		{Address: "192.0.2.2", ASN: 65000},
	}}
	p, err := cfg.Parse(policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	ibgp, ebgp := p.Neighbors[0].Export.LastResort, p.Neighbors[1].Export.LastResort
	if ibgp == nil || ibgp.Prepend != 0 || ibgp.LocalPref == nil || *ibgp.LocalPref != 50 {
		t.Errorf("iBGP last resort = %+v, want no prepend and local pref 50", ibgp)
	}
	if ebgp == nil || ebgp.Prepend != policy.DefaultLastResortPrepend || ebgp.LocalPref != nil {
		t.Errorf("eBGP last resort = %+v, want %d prepends and no local pref", ebgp, policy.DefaultLastResortPrepend)
	}
}
