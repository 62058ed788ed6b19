package main

// The soak: healthy apiservers must stay announced while the node is busy.
// Another kube-apiserver boots over and over next door (in node 1's
// namespace, on 127.0.0.1:6444 against node 1's etcd under its own prefix),
// the heaviest thing a control-plane node does, and the router's FIB must
// never lose a node.

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/vipcast/vipcast/e2e/lab"
)

// Soak is one soak's outcome.
type Soak struct {
	Router         string   `json:"router"`
	Build          string   `json:"build"`
	DurationS      float64  `json:"duration_s"`
	Withdraws      int      `json:"withdraws"` // FIB states missing a node
	Changes        []string `json:"fib_changes,omitempty"`
	NeighbourBoots int      `json:"neighbour_apiserver_boots"`
	LoadAvg        string   `json:"loadavg_end"`
}

// neighbourBoot is how long each boot of the neighbour apiserver runs
// before it is killed and started again: its start-up is the busy part.
const neighbourBoot = 8 * time.Second

func (b *bench) soak(d time.Duration) {
	b.waitAll(30 * time.Second)
	n := b.l.Node(1)
	dir, err := os.MkdirTemp(b.l.Dir, "neighbour-")
	b.fatal(err)
	args, err := neighbourArgs(dir)
	b.fatal(err)
	b.p.Logf("soak (%s, %s): %v of healthy apiservers, another apiserver booting every %v next door", b.router, b.build, d, neighbourBoot)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	boots := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		log, err := os.OpenFile(filepath.Join(dir, "kube-apiserver.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			b.p.Errorf("neighbour log: %v", err)
			return
		}
		defer log.Close()
		for {
			cmd := exec.Command("ip", append([]string{"netns", "exec", n.NS, lab.KubeAPIServerBin()}, args...)...)
			cmd.Stdout, cmd.Stderr = log, log
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
			if err := cmd.Start(); err != nil {
				b.p.Errorf("neighbour apiserver: %v", err)
				return
			}
			boots++
			exited := make(chan struct{})
			go func() { _ = cmd.Wait(); close(exited) }()
			select {
			case <-stop:
			case <-exited:
			case <-time.After(neighbourBoot):
			}
			_ = cmd.Process.Kill()
			<-exited
			select {
			case <-stop:
				return
			default:
			}
		}
	}()

	t0 := time.Now()
	time.Sleep(d)
	end := time.Now()
	close(stop)
	wg.Wait()

	s := Soak{Router: string(b.router), Build: b.build, DurationS: math.Round(end.Sub(t0).Seconds()), NeighbourBoots: boots, LoadAvg: loadavg()}
	all := b.l.AllAddrs(lab.VIP4)
	for _, st := range b.mon.History(t0) {
		if st.At.After(end) {
			break
		}
		if !slices.Equal(st.Nexthops, all) {
			s.Withdraws++
			s.Changes = append(s.Changes, fmt.Sprintf("%.3fs %v", st.At.Sub(t0).Seconds(), st.Nexthops))
		}
	}
	b.res.Soak = append(b.res.Soak, s)
	b.p.Logf("  soak: %d withdraw(s) in %.0f s, %d neighbour boots, load %s", s.Withdraws, s.DurationS, s.NeighbourBoots, s.LoadAvg)
}

// neighbourArgs are the neighbour kube-apiserver's flags, with its own
// service-account key and certificates in dir.
func neighbourArgs(dir string) ([]string, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	key := filepath.Join(dir, "sa.key")
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	if err := os.WriteFile(key, pemKey, 0o600); err != nil {
		return nil, err
	}
	return []string{
		"--etcd-servers=http://127.0.0.1:2379",
		"--etcd-prefix=/bench-neighbour",
		"--bind-address=127.0.0.1",
		"--secure-port=6444",
		"--cert-dir=" + filepath.Join(dir, "pki"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + key,
		"--service-account-signing-key-file=" + key,
		"--service-cluster-ip-range=203.0.113.128/25",
		"--profiling=false",
	}, nil
}
