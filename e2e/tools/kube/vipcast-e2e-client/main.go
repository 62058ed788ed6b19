// Command vipcast-e2e-client is the e2e lab's client-go program (issue 12,
// test 3): through the kubeconfig's server (the VIP) it lists Nodes in a
// loop and watches them with an informer, both with client-go's default
// retries, and counts what fails at each layer until SIGTERM or SIGINT.
// Then it prints one JSON summary on stdout:
//
//   - calls that failed as client-go returns them (lists that returned an
//     error, informer list/watch errors): what a controller would see;
//   - raw TCP failures underneath, which client-go's retries hide: dials
//     that failed and read/write errors (resets) on its connections, plus a
//     separate probe that opens a fresh TCP connection to the server every
//     -probe-interval and counts refused or timed-out connects;
//   - every sighting of a Node whose Ready condition is not True;
//   - each failed call with its time and whether the connection was reset
//     while client-go read the response body (after the headers): the one
//     failure client-go does not retry, and the one stateless ECMP causes
//     when a nexthop change moves a flow in flight (docs/performance.md).
//
// It prints "ready" on stderr once the first list succeeded and the informer
// synced, so the caller knows when to start the disruption.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// summary is the JSON printed at the end.
type summary struct {
	Seconds          float64   `json:"seconds"`
	Lists            int64     `json:"lists"`
	ListFailures     int64     `json:"listFailures"`
	WatchEvents      int64     `json:"watchEvents"`
	WatchFailures    int64     `json:"watchFailures"`
	Dials            int64     `json:"dials"`
	DialFailures     int64     `json:"dialFailures"`
	ConnErrors       int64     `json:"connErrors"`
	Probes           int64     `json:"probes"`
	ProbeFailures    int64     `json:"probeFailures"`
	NotReady         []string  `json:"notReady"`
	Errors           []string  `json:"errors"`
	TCPErrorsSampled []string  `json:"tcpErrors"`
	Failures         []failure `json:"failures"`
}

// failure is one failed call as client-go returned it.
type failure struct {
	At      time.Time `json:"at"`
	Call    string    `json:"call"` // "list", or "informer" (its list or watch)
	MidBody bool      `json:"midBody"`
	Err     string    `json:"err"`
}

// midBody: client-go had the response headers and lost the connection
// while reading the body, which it does not retry (rest.Request's
// transformResponse); a reset before the headers it retries for a GET.
func midBody(err error) bool {
	return strings.Contains(err.Error(), "unexpected error when reading response body")
}

type counters struct {
	lists, listFailures, watchEvents, watchFailures atomic.Int64
	dials, dialFailures, connErrors                 atomic.Int64
	probes, probeFailures                           atomic.Int64

	mu       sync.Mutex
	notReady []string
	errs     []string
	tcpErrs  []string
	failures []failure
}

func (c *counters) fail(call string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.failures) < 50 {
		c.failures = append(c.failures, failure{At: time.Now(), Call: call, MidBody: midBody(err), Err: err.Error()})
	}
}

func (c *counters) note(list *[]string, format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(*list) < 50 {
		*list = append(*list, time.Now().UTC().Format("15:04:05.000")+" "+fmt.Sprintf(format, args...))
	}
}

// conn counts read and write errors other than an orderly close.
type conn struct {
	net.Conn
	c    *counters
	once sync.Once
}

func (k *conn) fail(op string, err error) {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return
	}
	k.once.Do(func() { // one failure per connection
		k.c.connErrors.Add(1)
		k.c.note(&k.c.tcpErrs, "%s %s: %v", op, k.RemoteAddr(), err)
	})
}

func (k *conn) Read(b []byte) (int, error) {
	n, err := k.Conn.Read(b)
	k.fail("read", err)
	return n, err
}

func (k *conn) Write(b []byte) (int, error) {
	n, err := k.Conn.Write(b)
	k.fail("write", err)
	return n, err
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig (its server is the VIP)")
	interval := flag.Duration("interval", 100*time.Millisecond, "time between two Node lists")
	probeInterval := flag.Duration("probe-interval", 50*time.Millisecond, "time between two raw TCP connects")
	flag.Parse()
	if err := run(*kubeconfig, *interval, *probeInterval); err != nil {
		fmt.Fprintln(os.Stderr, "vipcast-e2e-client:", err)
		os.Exit(1)
	}
}

func run(kubeconfig string, interval, probeInterval time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	u, err := url.Parse(cfg.Host)
	if err != nil {
		return fmt.Errorf("server %q: %w", cfg.Host, err)
	}
	// Client-side rate limiting would only slow the loop down.
	cfg.QPS, cfg.Burst = 100, 200
	c := &counters{}
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c.dials.Add(1)
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil {
			c.dialFailures.Add(1)
			c.note(&c.tcpErrs, "dial %s: %v", addr, err)
			return nil, err
		}
		return &conn{Conn: nc, c: c}, nil
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	checkNode := func(n *corev1.Node, via string) {
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status != corev1.ConditionTrue {
				c.note(&c.notReady, "%s: Node %s Ready=%s (%s)", via, n.Name, cond.Status, cond.Reason)
			}
		}
	}

	start := time.Now()
	factory := informers.NewSharedInformerFactory(cs, 0)
	inf := factory.Core().V1().Nodes().Informer()
	if err := inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
		c.watchFailures.Add(1)
		c.note(&c.errs, "informer list/watch: %v", err)
		c.fail("informer", err)
	}); err != nil {
		return err
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			c.watchEvents.Add(1)
			if n, ok := obj.(*corev1.Node); ok {
				checkNode(n, "watch")
			}
		},
		UpdateFunc: func(_, obj any) {
			c.watchEvents.Add(1)
			if n, ok := obj.(*corev1.Node); ok {
				checkNode(n, "watch")
			}
		},
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { // raw TCP probe: a fresh connection each time, no retry
		defer wg.Done()
		addr := u.Host
		if u.Port() == "" {
			addr = net.JoinHostPort(u.Hostname(), "443")
		}
		tk := time.NewTicker(probeInterval)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			c.probes.Add(1)
			nc, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				c.probeFailures.Add(1)
				c.note(&c.tcpErrs, "probe %s: %v", addr, err)
				continue
			}
			_ = nc.Close()
		}
	}()

	ready := false
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		list, err := cs.CoreV1().Nodes().List(lctx, metav1.ListOptions{})
		cancel()
		if ctx.Err() != nil {
			break
		}
		c.lists.Add(1)
		if err != nil {
			c.listFailures.Add(1)
			c.note(&c.errs, "list nodes: %v", err)
			c.fail("list", err)
		} else {
			for i := range list.Items {
				checkNode(&list.Items[i], "list")
			}
			if !ready && inf.HasSynced() {
				ready = true
				fmt.Fprintln(os.Stderr, "ready")
			}
		}
		select {
		case <-ctx.Done():
		case <-tk.C:
			continue
		}
		break
	}
	stop()
	wg.Wait()
	c.mu.Lock()
	s := summary{
		Seconds: time.Since(start).Seconds(),
		Lists:   c.lists.Load(), ListFailures: c.listFailures.Load(),
		WatchEvents: c.watchEvents.Load(), WatchFailures: c.watchFailures.Load(),
		Dials: c.dials.Load(), DialFailures: c.dialFailures.Load(), ConnErrors: c.connErrors.Load(),
		Probes: c.probes.Load(), ProbeFailures: c.probeFailures.Load(),
		NotReady: c.notReady, Errors: c.errs, TCPErrorsSampled: c.tcpErrs,
		Failures: c.failures,
	}
	c.mu.Unlock()
	return json.NewEncoder(os.Stdout).Encode(s)
}
