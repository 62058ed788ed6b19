package peers

import (
	"context"
	"net/netip"
	"testing"

	"github.com/vipcast/vipcast/policy"
)

// mustParse is Config.Parse for a configuration the test knows is valid.
func mustParse(t testing.TB, c Config, pol policy.Config) Peering {
	t.Helper()
	p, err := c.Parse(pol)
	if err != nil {
		t.Fatalf("test config: %v", err)
	}
	return p
}

// announce and withdraw change one prefix through Set, keeping the others:
// the tests were written one prefix at a time.
func (g *GoBGP) announce(ctx context.Context, p netip.Prefix, a policy.Attributes) error {
	want := g.current()
	want[p] = a
	return g.Set(ctx, want)
}

func (g *GoBGP) withdraw(ctx context.Context, p netip.Prefix) error {
	want := g.current()
	delete(want, p)
	return g.Set(ctx, want)
}

// current returns the paths g has in its RIB.
func (g *GoBGP) current() map[netip.Prefix]policy.Attributes {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[netip.Prefix]policy.Attributes, len(g.paths))
	for p, a := range g.paths {
		out[p] = a.attrs
	}
	return out
}
