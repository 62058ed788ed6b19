package lab

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
)

// buildNetwork creates the namespaces and links:
//
//	client (198.51.100.2, 2001:db8:3::2) -- router "cl" (198.51.100.1, 2001:db8:3::1)
//	router br0 (192.0.2.1/24, 2001:db8:2::1/64) -- vN (veth) -- node nN eth0 (192.0.2.1N, 2001:db8:2::1N)
func (l *Lab) buildNetwork() error {
	l.routerNS, l.clientNS = l.ID+"r", l.ID+"c"
	for i := 1; i <= l.Opts.Nodes; i++ {
		n := &Node{lab: l, Index: i, Name: fmt.Sprintf("n%d", i), NS: fmt.Sprintf("%sn%d", l.ID, i),
			Addr4: NodeAddr4(i), Addr6: NodeAddr6(i), Dir: filepath.Join(l.Dir, fmt.Sprintf("n%d", i)),
			password: l.Opts.MD5Password}
		if err := os.MkdirAll(n.Dir, 0o755); err != nil {
			return err
		}
		l.nodes = append(l.nodes, n)
	}
	for _, ns := range l.namespaces() {
		if err := addNetns(ns); err != nil {
			return err
		}
		// No duplicate address detection: addresses are usable at once.
		if err := sysctls(ns, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
			"net.ipv6.conf.all.dad_transmits=0", "net.ipv6.conf.default.dad_transmits=0"); err != nil {
			return err
		}
	}
	if err := sysctls(l.routerNS, "net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1",
		"net.ipv6.conf.all.forwarding=1", "net.ipv6.fib_multipath_hash_policy=1"); err != nil {
		return err
	}
	r, c := l.routerNS, l.clientNS
	// One `ip -n NS -batch` per namespace; the router's creates every veth.
	rc := []string{
		"link set lo up",
		"link add br0 type bridge",
		"addr add 192.0.2.1/24 dev br0",
		"addr add 2001:db8:2::1/64 dev br0 nodad",
		"link set br0 up",
		"link add cl type veth peer name eth0 netns " + c,
		"addr add 198.51.100.1/24 dev cl",
		"addr add 2001:db8:3::1/64 dev cl nodad",
		"link set cl up",
	}
	for _, n := range l.nodes {
		v := n.routerLink()
		rc = append(rc,
			fmt.Sprintf("link add %s type veth peer name eth0 netns %s", v, n.NS),
			fmt.Sprintf("link set %s master br0", v),
			fmt.Sprintf("link set %s up", v))
	}
	if err := ipBatch(r, rc); err != nil {
		return err
	}
	if err := ipBatch(c, []string{
		"link set lo up",
		"addr add 198.51.100.2/24 dev eth0",
		"addr add 2001:db8:3::2/64 dev eth0 nodad",
		"link set eth0 up",
		"route add default via 198.51.100.1",
		"route add ::/0 via 2001:db8:3::1",
	}); err != nil {
		return err
	}
	for _, n := range l.nodes {
		if err := ipBatch(n.NS, []string{
			"link set lo up",
			fmt.Sprintf("addr add %s/24 dev eth0", n.Addr4),
			fmt.Sprintf("addr add %s/64 dev eth0 nodad", n.Addr6),
			"link set eth0 up",
			fmt.Sprintf("route add default via %s", RouterAddr4),
			fmt.Sprintf("route add ::/0 via %s", RouterAddr6),
		}); err != nil {
			return err
		}
	}
	return nil
}

// writeSharedFiles writes what every apiserver shares: the service account
// key pair and the token file.
func (l *Lab) writeSharedFiles() error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	l.saKey = filepath.Join(l.Dir, "sa.key")
	l.saPub = filepath.Join(l.Dir, "sa.pub")
	l.tokens = filepath.Join(l.Dir, "tokens.csv")
	if err := os.WriteFile(l.saKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(l.saPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		return err
	}
	var tok [16]byte
	_, _ = rand.Read(tok[:])
	return os.WriteFile(l.tokens, []byte(hex.EncodeToString(tok[:])+",admin,admin,system:masters\n"), 0o600)
}
