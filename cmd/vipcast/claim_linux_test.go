package main

import (
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// TestRemoveStaleVIPs runs the start-up cleanup in a fresh network
// namespace with what a predecessor left on lo: a labelled IPv4 VIP, an
// IPv6 VIP (no label) and an admin's address that must survive.
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
		{"unparseable config", fileConfig{}, []string{"127.0.0.1/8", "198.51.100.7/32", "2001:db8:ffff::10/128", "::1/128"}},
		{"configured vips", func() fileConfig {
			c := defaultConfig()
			c.Speaker.VIPs = []string{"2001:db8:ffff::10/128", "203.0.113.0/24"}
			return c
		}(), []string{"127.0.0.1/8", "198.51.100.7/32", "::1/128"}},
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
					{IPNet: cidr("2001:db8:ffff::10/128"), Flags: 0x02 /* IFA_F_NODAD */},
				} {
					if err := netlink.AddrAdd(lo, &a); err != nil {
						return nil, err
					}
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
