package lab

import (
	"maps"
	"net/netip"
	"strings"
	"testing"
)

// These run without root: they pin the BFD parsers the e2e assertions rely on.

func TestParseFRRBFDPeers(t *testing.T) {
	a := netip.MustParseAddr
	in := `[{"multihop":false,"peer":"192.0.2.11","local":"192.0.2.1","vrf":"default","interface":"br0","id":1,"remote-id":2,"status":"up","uptime":4},
		{"multihop":false,"peer":"192.0.2.12","local":"0.0.0.0","vrf":"default","id":3,"remote-id":0,"status":"down","downtime":1},
		{"multihop":false,"peer":"192.0.2.13","vrf":"default","status":"init"}]`
	got, err := parseFRRBFDPeers([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[netip.Addr]string{a("192.0.2.11"): "Up", a("192.0.2.12"): "Down", a("192.0.2.13"): "Init"}
	if !maps.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	full, _ := parseFRRBFDPeersFull([]byte(in))
	if full[a("192.0.2.11")].Interface != "br0" || full[a("192.0.2.12")].Interface != "" {
		t.Errorf("interfaces: %+v", full)
	}
	if _, err := parseFRRBFDPeers([]byte("% Unknown command")); err == nil {
		t.Errorf("no error for non-JSON output")
	}
}

func TestParseBirdBFDSessions(t *testing.T) {
	a := netip.MustParseAddr
	in := strings.Join([]string{
		"BIRD 2.0.12 ready.",
		"bfd1:",
		"IP address                Interface  State      Since         Interval  Timeout",
		"192.0.2.11                br0        Up         12:19:40.310    0.100    0.300",
		"192.0.2.12                br0        Down       12:19:56.892    1.000    0.000",
		"192.0.2.13                br0        Init       12:19:57.000    1.000    3.000",
	}, "\n")
	want := map[netip.Addr]string{a("192.0.2.11"): "Up", a("192.0.2.12"): "Down", a("192.0.2.13"): "Init"}
	if got := parseBirdBFDSessions(in); !maps.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
