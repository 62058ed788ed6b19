package lab

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Path is one BGP path for a prefix in the router's table.
type Path struct {
	Peer        netip.Addr // the neighbor it came from
	NextHop     netip.Addr
	ASPath      string
	MED         int
	HasMED      bool
	Communities []string // "64512:100"
	Best        bool
	Multipath   bool // installed as one of the ECMP paths (FRR only)
}

type routerImpl interface {
	start() error
	kill()
	alive() bool
	paths(p netip.Prefix) ([]Path, error)
	sessions() (map[netip.Addr]string, error)    // peer -> state ("Established")
	bfdSessions() (map[netip.Addr]string, error) // peer -> BFD state ("Up", "Down", "Init")
	bfdSettled() (ok bool, last string)          // BFD Up with every node, in its final form
	dump() string
	logs() []string
}

func (l *Lab) peerAddrs() (v4, v6 []netip.Addr) {
	for _, n := range l.nodes {
		v4 = append(v4, n.Addr4)
		if l.Opts.IPv6 {
			v6 = append(v6, n.Addr6)
		}
	}
	return
}

// ---------------------------------------------------------------- FRR

type frrRouter struct {
	lab   *Lab
	dir   string
	procs []*proc
}

func (r *frrRouter) vtysh(args ...string) (string, error) {
	return run("vtysh", append([]string{"--vty_socket", r.dir}, args...)...)
}

func (r *frrRouter) config() string {
	l := r.lab
	o := l.Opts
	hold, ka, retry := int(o.HoldTime.Seconds()), int(o.KeepaliveTime.Seconds()), int(o.ConnectRetry.Seconds())
	if retry < 1 {
		retry = 1
	}
	var b strings.Builder
	fmt.Fprintf(&b, "frr defaults datacenter\nhostname %s\nlog file %s debugging\n", l.routerNS, filepath.Join(r.dir, "frr.log"))
	// Milliseconds, so the bench can time a restart from bgpd's "released
	// from config-pending hold" (RouterReleased).
	b.WriteString("log timestamp precision 3\n")
	b.WriteString("debug bgp neighbor-events\ndebug bgp updates in\n!\n")
	b.WriteString(r.bfdConfig())
	fmt.Fprintf(&b, "router bgp %d\n bgp router-id %s\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n", RouterASN, RouterAddr4)
	b.WriteString(" bgp bestpath as-path multipath-relax\n")
	group := func(name string, peers []netip.Addr) {
		fmt.Fprintf(&b, " neighbor %s peer-group\n neighbor %s remote-as %d\n", name, name, NodeASN)
		fmt.Fprintf(&b, " neighbor %s timers %d %d\n neighbor %s timers connect %d\n", name, ka, hold, name, retry)
		if o.MD5Password != "" {
			fmt.Fprintf(&b, " neighbor %s password %s\n", name, o.MD5Password)
		}
		if o.BFD != nil {
			fmt.Fprintf(&b, " neighbor %s bfd profile %s\n", name, frrBFDProfile)
		}
		if o.DynamicPeers && len(peers) > 0 {
			bits := 24
			if peers[0].Is6() {
				bits = 64
			}
			fmt.Fprintf(&b, " bgp listen range %s peer-group %s\n", netip.PrefixFrom(peers[0], bits).Masked(), name)
			return
		}
		for _, p := range peers {
			fmt.Fprintf(&b, " neighbor %s peer-group %s\n", p, name)
		}
	}
	v4, v6 := l.peerAddrs()
	group("NODES", v4)
	if len(v6) > 0 {
		group("NODES6", v6)
	}
	b.WriteString(" address-family ipv4 unicast\n  maximum-paths 16\n  neighbor NODES activate\n exit-address-family\n")
	if len(v6) > 0 {
		b.WriteString(" address-family ipv6 unicast\n  maximum-paths 16\n  neighbor NODES6 activate\n  neighbor NODES6 route-map GLOBAL-NH in\n exit-address-family\n")
	}
	b.WriteString("exit\n!\nroute-map GLOBAL-NH permit 10\n set ipv6 next-hop prefer-global\nexit\n")
	return b.String()
}

func (r *frrRouter) start() error {
	l := r.lab
	r.dir = filepath.Join(l.Dir, "frr")
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return err
	}
	if u, err := user.Lookup("frr"); err == nil {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		_ = os.Chown(r.dir, uid, gid)
	}
	// Sockets of a previous run of the daemons would make vtysh talk to nothing.
	for _, f := range []string{"zebra.vty", "bgpd.vty", "bfdd.vty", "zserv.api", "bfdd.sock"} {
		_ = os.Remove(filepath.Join(r.dir, f))
	}
	common := func(d string) []string {
		return []string{"/usr/lib/frr/" + d, "-u", "frr", "-g", "frr", "-P", "0", "-f", "/dev/null",
			"-i", filepath.Join(r.dir, d+".pid"), "-z", filepath.Join(r.dir, "zserv.api"),
			"--vty_socket", r.dir, "--log", "file:" + filepath.Join(r.dir, d+".log")}
	}
	if len(r.procs) == 0 {
		r.procs = []*proc{
			newProc("router/zebra", l.routerNS, filepath.Join(r.dir, "zebra.out"), common("zebra")...),
			newProc("router/bgpd", l.routerNS, filepath.Join(r.dir, "bgpd.out"), common("bgpd")...),
			newProc("router/bfdd", l.routerNS, filepath.Join(r.dir, "bfdd.out"),
				append(common("bfdd"), "--bfdctl", filepath.Join(r.dir, "bfdd.sock"))...),
		}
	}
	for i, p := range r.procs {
		if err := p.start(); err != nil {
			return err
		}
		if i == 0 { // bgpd and bfdd connect to zebra's socket
			if err := waitFile(filepath.Join(r.dir, "zserv.api"), 10*time.Second); err != nil {
				return fmt.Errorf("zebra: %w\n%s", err, tail(p.logPath, 20))
			}
		}
	}
	for _, d := range []string{"zebra", "bgpd", "bfdd"} {
		if err := waitFile(filepath.Join(r.dir, d+".vty"), 10*time.Second); err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
	}
	conf := filepath.Join(r.dir, "frr.conf")
	if err := os.WriteFile(conf, []byte(r.config()), 0o644); err != nil {
		return err
	}
	if out, err := r.vtysh("-f", conf); err != nil {
		return fmt.Errorf("vtysh -f: %w\n%s", err, out)
	}
	return nil
}

func waitFile(path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("%s did not appear in %v", path, timeout)
}

func (r *frrRouter) kill() {
	for i := len(r.procs) - 1; i >= 0; i-- {
		r.procs[i].kill()
	}
}

func (r *frrRouter) alive() bool {
	for _, p := range r.procs {
		if !p.alive() {
			return false
		}
	}
	return len(r.procs) > 0
}

func afiOf(p netip.Prefix) string {
	if p.Addr().Is6() {
		return "ipv6"
	}
	return "ipv4"
}

func (r *frrRouter) paths(p netip.Prefix) ([]Path, error) {
	out, err := r.vtysh("-c", fmt.Sprintf("show bgp %s unicast %s json", afiOf(p), p))
	if err != nil {
		return nil, err
	}
	var doc struct {
		Paths []struct {
			ASPath struct {
				String string `json:"string"`
			} `json:"aspath"`
			MED       *int `json:"med"`
			Metric    *int `json:"metric"`
			Multipath bool `json:"multipath"`
			Bestpath  *struct {
				Overall bool `json:"overall"`
			} `json:"bestpath"`
			Community *struct {
				String string `json:"string"`
			} `json:"community"`
			Nexthops []struct {
				IP    string `json:"ip"`
				Scope string `json:"scope"`
			} `json:"nexthops"`
			Peer struct {
				PeerID string `json:"peerId"`
			} `json:"peer"`
		} `json:"paths"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return nil, fmt.Errorf("show bgp json: %w: %s", err, out)
	}
	var paths []Path
	for _, jp := range doc.Paths {
		pa := Path{ASPath: jp.ASPath.String, Multipath: jp.Multipath}
		pa.Peer, _ = netip.ParseAddr(jp.Peer.PeerID)
		if jp.Bestpath != nil && jp.Bestpath.Overall {
			pa.Best = true
		}
		switch {
		case jp.MED != nil:
			pa.MED, pa.HasMED = *jp.MED, true
		case jp.Metric != nil:
			pa.MED, pa.HasMED = *jp.Metric, true
		}
		if jp.Community != nil {
			pa.Communities = strings.Fields(jp.Community.String)
		}
		for _, nh := range jp.Nexthops {
			if a, err := netip.ParseAddr(nh.IP); err == nil && (!a.IsLinkLocalUnicast() || !pa.NextHop.IsValid()) {
				if !pa.NextHop.IsValid() || pa.NextHop.IsLinkLocalUnicast() {
					pa.NextHop = a
				}
			}
		}
		paths = append(paths, pa)
	}
	sortPaths(paths)
	return paths, nil
}

func sortPaths(ps []Path) {
	sort.Slice(ps, func(i, j int) bool { return ps[i].Peer.Less(ps[j].Peer) })
}

func (r *frrRouter) sessions() (map[netip.Addr]string, error) {
	out, err := r.vtysh("-c", "show bgp neighbors json")
	if err != nil {
		return nil, err
	}
	var doc map[string]struct {
		State string `json:"bgpState"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return nil, fmt.Errorf("show bgp neighbors json: %w", err)
	}
	m := map[netip.Addr]string{}
	for k, v := range doc {
		if a, err := netip.ParseAddr(k); err == nil {
			m[a] = v.State
		}
	}
	return m, nil
}

func (r *frrRouter) dump() string {
	var b strings.Builder
	cmds := []string{"show bgp summary", "show bgp ipv4 unicast", "show bgp ipv6 unicast", "show ip route bgp", "show ipv6 route bgp"}
	if r.lab.Opts.BFD != nil {
		cmds = append(cmds, "show bfd peers")
	}
	for _, c := range cmds {
		out, err := r.vtysh("-c", c)
		fmt.Fprintf(&b, "--- router vtysh %q (err=%v)\n%s", c, err, out)
	}
	return b.String()
}

func (r *frrRouter) logs() []string {
	logs := []string{filepath.Join(r.dir, "frr.log"), filepath.Join(r.dir, "zebra.log"), filepath.Join(r.dir, "bgpd.log"),
		filepath.Join(r.dir, "zebra.out"), filepath.Join(r.dir, "bgpd.out")}
	if r.lab.Opts.BFD != nil {
		logs = append(logs, filepath.Join(r.dir, "bfdd.log"), filepath.Join(r.dir, "bfdd.out"))
	}
	return logs
}

// ---------------------------------------------------------------- BIRD

type birdRouter struct {
	lab  *Lab
	dir  string
	proc *proc
}

func (r *birdRouter) ctl() string { return filepath.Join(r.dir, "bird.ctl") }

func (r *birdRouter) birdc(args ...string) (string, error) {
	return run("birdc", append([]string{"-s", r.ctl()}, args...)...)
}

// protoName maps a peer to its BIRD protocol name.
func protoName(n *Node, v6 bool) string {
	if v6 {
		return n.Name + "v6"
	}
	return n.Name
}

func (r *birdRouter) config() string {
	l := r.lab
	o := l.Opts
	hold, ka, retry := int(o.HoldTime.Seconds()), int(o.KeepaliveTime.Seconds()), int(o.ConnectRetry.Seconds())
	if retry < 1 {
		retry = 1
	}
	var b strings.Builder
	fmt.Fprintf(&b, "log %q all;\nrouter id %s;\ndebug protocols { states, events };\n", filepath.Join(r.dir, "bird.log"), RouterAddr4)
	b.WriteString("protocol device { scan time 1; }\n")
	b.WriteString("protocol kernel k4 { ipv4 { import none; export all; }; merge paths on; }\n")
	b.WriteString("protocol kernel k6 { ipv6 { import none; export all; }; merge paths on; }\n")
	b.WriteString(r.bfdConfig())
	tmpl := func(name string, local netip.Addr, afi string) {
		fmt.Fprintf(&b, "template bgp %s {\n  local %s as %d;\n  hold time %d; keepalive time %d; connect retry time %d;\n  error wait time 1,5;\n",
			name, local, RouterASN, hold, ka, retry)
		if o.MD5Password != "" {
			fmt.Fprintf(&b, "  password %q;\n", o.MD5Password)
		}
		if o.BFD != nil {
			b.WriteString("  bfd on;\n")
		}
		fmt.Fprintf(&b, "  %s { import all; export none; };\n}\n", afi)
	}
	tmpl("nodes4", RouterAddr4, "ipv4")
	for _, n := range l.nodes {
		fmt.Fprintf(&b, "protocol bgp %s from nodes4 { neighbor %s as %d; }\n", protoName(n, false), n.Addr4, NodeASN)
	}
	if o.IPv6 {
		tmpl("nodes6", RouterAddr6, "ipv6")
		for _, n := range l.nodes {
			fmt.Fprintf(&b, "protocol bgp %s from nodes6 { neighbor %s as %d; }\n", protoName(n, true), n.Addr6, NodeASN)
		}
	}
	return b.String()
}

func (r *birdRouter) start() error {
	l := r.lab
	r.dir = filepath.Join(l.Dir, "bird")
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return err
	}
	conf := filepath.Join(r.dir, "bird.conf")
	if err := os.WriteFile(conf, []byte(r.config()), 0o644); err != nil {
		return err
	}
	_ = os.Remove(r.ctl())
	if r.proc == nil {
		r.proc = newProc("router/bird", l.routerNS, filepath.Join(r.dir, "bird.out"),
			"bird", "-f", "-c", conf, "-s", r.ctl(), "-P", filepath.Join(r.dir, "bird.pid"))
	}
	if err := r.proc.start(); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := r.birdc("show", "status"); err == nil {
			return nil
		}
		if !r.proc.alive() {
			return fmt.Errorf("bird exited: %v\n%s", r.proc.exitErr(), tail(r.proc.logPath, 20))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("bird control socket not answering\n%s", tail(r.proc.logPath, 20))
}

func (r *birdRouter) kill() {
	if r.proc != nil {
		r.proc.kill()
	}
}

func (r *birdRouter) alive() bool { return r.proc != nil && r.proc.alive() }

// peerOfProto maps BIRD protocol names back to peer addresses.
func (r *birdRouter) peerOfProto() map[string]netip.Addr {
	m := map[string]netip.Addr{}
	for _, n := range r.lab.nodes {
		m[protoName(n, false)] = n.Addr4
		m[protoName(n, true)] = n.Addr6
	}
	return m
}

// paths parses `birdc show route for P all`:
//
//	203.0.113.10/32      unicast [n1 11:45:07.123] * (100) [AS64512i]
//		via 192.0.2.11 on br0
//		BGP.med: 10
//		BGP.community: (64512,100)
func (r *birdRouter) paths(p netip.Prefix) ([]Path, error) {
	out, err := r.birdc("show", "route", "for", p.String(), "all")
	if err != nil {
		return nil, err
	}
	return parseBirdRoutes(out, r.peerOfProto()), nil
}

func parseBirdRoutes(out string, peers map[string]netip.Addr) []Path {
	var paths []Path
	var cur *Path
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		trim := strings.TrimSpace(line)
		if i := strings.Index(line, "unicast ["); i >= 0 {
			paths = append(paths, Path{})
			cur = &paths[len(paths)-1]
			rest := line[i+len("unicast ["):]
			name, _, _ := strings.Cut(rest, " ")
			cur.Peer = peers[strings.TrimSuffix(name, "]")]
			if after, ok := strings.CutPrefix(strings.TrimSpace(rest[strings.Index(rest, "]")+1:]), "*"); ok {
				_ = after
				cur.Best = true
			}
			continue
		}
		if cur == nil {
			continue
		}
		switch {
		case strings.HasPrefix(trim, "via "):
			f := strings.Fields(trim)
			if len(f) > 1 {
				cur.NextHop, _ = netip.ParseAddr(f[1])
			}
		case strings.HasPrefix(trim, "BGP.as_path:"):
			cur.ASPath = strings.TrimSpace(strings.TrimPrefix(trim, "BGP.as_path:"))
		case strings.HasPrefix(trim, "BGP.med:"):
			cur.MED, _ = strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(trim, "BGP.med:")))
			cur.HasMED = true
		case strings.HasPrefix(trim, "BGP.community:"):
			for _, c := range strings.Fields(strings.TrimPrefix(trim, "BGP.community:")) {
				c = strings.Trim(c, "()")
				cur.Communities = append(cur.Communities, strings.Replace(c, ",", ":", 1))
			}
		}
	}
	for i := range paths {
		paths[i].Multipath = true // merge paths on: every path of equal preference is installed
	}
	sortPaths(paths)
	return paths
}

func (r *birdRouter) sessions() (map[netip.Addr]string, error) {
	out, err := r.birdc("show", "protocols")
	if err != nil {
		return nil, err
	}
	peers := r.peerOfProto()
	m := map[netip.Addr]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[1] != "BGP" {
			continue
		}
		a, ok := peers[f[0]]
		if !ok {
			continue
		}
		state := "?"
		if len(f) >= 6 {
			state = f[5]
		} else if len(f) >= 4 {
			state = f[3]
		}
		m[a] = state
	}
	return m, nil
}

func (r *birdRouter) dump() string {
	var b strings.Builder
	cmds := [][]string{{"show", "protocols", "all"}, {"show", "route", "all"}}
	if r.lab.Opts.BFD != nil {
		cmds = append(cmds, []string{"show", "bfd", "sessions"})
	}
	for _, c := range cmds {
		out, err := r.birdc(c...)
		fmt.Fprintf(&b, "--- router birdc %q (err=%v)\n%s", strings.Join(c, " "), err, out)
	}
	return b.String()
}

func (r *birdRouter) logs() []string {
	return []string{filepath.Join(r.dir, "bird.log"), filepath.Join(r.dir, "bird.out")}
}
