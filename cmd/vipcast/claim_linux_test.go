package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vipcast/vipcast/speaker"
)

// TestRemoveStaleVIPs runs the start-up cleanup in a fresh network
// namespace with what a predecessor left on lo: a labelled IPv4 VIP, an
// IPv6 VIP (no label: marked by the address protocol) and an admin's IPv4
// and IPv6 addresses that must survive.
func TestRemoveStaleVIPs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: needs root (a network namespace and netlink)")
	}
	tests := []struct {
		name string
		cfg  fileConfig
		want []string
	}{
		// An unparseable file gives an empty config: only the label is known.
		{"unparseable config", fileConfig{}, []string{"127.0.0.1/8", "198.51.100.7/32", "2001:db8::99/128", "::1/128"}},
		{"configured vips", func() fileConfig {
			c := defaultConfig()
			c.Speaker.VIPs = []string{"2001:db8:ffff::10/128", "203.0.113.0/24"}
			return c
		}(), []string{"127.0.0.1/8", "198.51.100.7/32", "2001:db8::99/128", "::1/128"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := inFreshNetns(func() ([]string, error) {
				lo, err := netlink.LinkByName("lo")
				if err != nil {
					return nil, err
				}
				if err := netlink.LinkSetUp(lo); err != nil {
					return nil, err
				}
				for _, a := range []netlink.Addr{
					{IPNet: cidr("203.0.113.10/32"), Label: "lo:vip"},
					{IPNet: cidr("198.51.100.7/32")},
					{IPNet: cidr("2001:db8::99/128"), Flags: 0x02 /* IFA_F_NODAD */},
				} {
					if err := netlink.AddrAdd(lo, &a); err != nil {
						return nil, err
					}
				}
				// The predecessor's IPv6 VIP, added as vipcast adds it.
				pred, err := speaker.NewLoopback("lo", slog.New(slog.DiscardHandler))
				if err != nil {
					return nil, err
				}
				err = pred.Add(netip.MustParsePrefix("2001:db8:ffff::10/128"))
				pred.Close()
				if err != nil {
					return nil, err
				}
				removeStaleVIPs(tt.cfg, slog.New(slog.DiscardHandler))
				addrs, err := netlink.AddrList(lo, netlink.FAMILY_ALL)
				if err != nil {
					return nil, err
				}
				var out []string
				for _, a := range addrs {
					out = append(out, a.IPNet.String())
				}
				slices.Sort(out)
				return out, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("addresses on lo after the cleanup: %v, want %v", got, tt.want)
			}
		})
	}
}

// inFreshNetns runs fn on a thread moved into a new network namespace. The
// thread is never unlocked, so the runtime discards it with the namespace
// when the goroutine ends; the test's own threads never change namespace.
func inFreshNetns(fn func() ([]string, error)) ([]string, error) {
	type result struct {
		out []string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := netns.New()
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer ns.Close()
		out, err := fn()
		ch <- result{out, err}
	}()
	r := <-ch
	return r.out, r.err
}

func cidr(s string) *net.IPNet {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	n.IP = ip
	return n
}

// TestRunOrder drives `vipcast run` in a fresh network namespace where a
// killed predecessor left its labelled VIP on lo. With another speaker
// holding the namespace's lock, run must exit 1 naming it and leave lo
// alone; without, a run that fails on its configuration must still remove
// the stale VIP. cobra runs RunE on the calling goroutine, which stays on
// the namespace's thread; run fails before it starts any goroutine.
func TestRunOrder(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: needs root (a network namespace and netlink)")
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("vips: [203.0.113.10/32\nbgp: {asn: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, locked := range []bool{true, false} {
		t.Run(fmt.Sprintf("other speaker running=%v", locked), func(t *testing.T) {
			var stderr bytes.Buffer
			var code int
			got, err := inFreshNetns(func() ([]string, error) {
				lo, err := netlink.LinkByName("lo")
				if err != nil {
					return nil, err
				}
				if err := netlink.LinkSetUp(lo); err != nil {
					return nil, err
				}
				if err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: cidr("203.0.113.10/32"), Label: "lo:vip"}); err != nil {
					return nil, err
				}
				if locked {
					other, err := speaker.LockInstance(speaker.InstanceName, "the other one", nil)
					if err != nil {
						return nil, err
					}
					defer other.Close()
				}
				code = execute([]string{"run", "-c", bad}, nil, io.Discard, &stderr)
				addrs, err := netlink.AddrList(lo, netlink.FAMILY_V4)
				if err != nil {
					return nil, err
				}
				var out []string
				for _, a := range addrs {
					out = append(out, a.IPNet.String())
				}
				return out, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			want, wantCode := []string{"127.0.0.1/8"}, 2
			if locked {
				want, wantCode = []string{"127.0.0.1/8", "203.0.113.10/32"}, 1
				if !strings.Contains(stderr.String(), "already runs") || !strings.Contains(stderr.String(), fmt.Sprintf("pid %d", os.Getpid())) {
					t.Errorf("stderr does not name the running speaker:\n%s", stderr.String())
				}
			}
			if code != wantCode {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, wantCode, stderr.String())
			}
			if !slices.Equal(got, want) {
				t.Errorf("IPv4 addresses on lo after run: %v, want %v", got, want)
			}
		})
	}
}
