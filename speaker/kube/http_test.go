package kube

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/vipcast/vipcast/speaker"
)

// fakeAPIServer answers the two requests vipcast makes, like a
// kube-apiserver would, under an optional path prefix, for one bearer
// token. Node "cp1" exists; "hang" never answers until the request ends;
// creating an event whose note contains "forbid" is refused with a Status,
// and one whose note contains "proxy" gets a plain-text 502.
type fakeAPIServer struct {
	t      *testing.T
	prefix string
	token  string

	mu      sync.Mutex
	events  []eventsv1.Event
	bodies  []map[string]any
	agents  []string
	queries []url.Values // of the LISTs of leases
}

func (f *fakeAPIServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if got := r.Header.Get("Authorization"); got != "Bearer "+f.token {
		writeStatus(w, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "Unauthorized")
		return
	}
	f.mu.Lock()
	f.agents = append(f.agents, r.UserAgent())
	f.mu.Unlock()
	if a := r.Header.Get("Accept"); a != "application/json" {
		f.t.Errorf("%s %s: Accept %q", r.Method, r.URL.Path, a)
	}
	path, ok := strings.CutPrefix(r.URL.Path, f.prefix)
	if !ok {
		http.NotFound(w, r)
		return
	}
	switch {
	case strings.HasPrefix(path, "/api/v1/nodes/"):
		if r.Method != http.MethodGet {
			writeStatus(w, http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed, "method not allowed")
			return
		}
		name := strings.TrimPrefix(path, "/api/v1/nodes/")
		switch name {
		case "cp1":
			n := node("cp1", map[string]string{"topology.kubernetes.io/zone": "a"})
			n.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Node"}
			n.Status.Capacity = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4")}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(n)
		case "hang":
			<-r.Context().Done()
			panic(http.ErrAbortHandler) // no answer at all
		default:
			writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, `nodes "`+name+`" not found`)
		}
	case path == "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases":
		if r.Method != http.MethodGet {
			writeStatus(w, http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed, "method not allowed")
			return
		}
		f.mu.Lock()
		f.queries = append(f.queries, r.URL.Query())
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(coordinationv1.LeaseList{
			TypeMeta: metav1.TypeMeta{APIVersion: "coordination.k8s.io/v1", Kind: "LeaseList"},
			Items:    []coordinationv1.Lease{*newStatusLease("kube-system", "cp1")},
		})
	case path == "/apis/events.k8s.io/v1/namespaces/default/events":
		if r.Method != http.MethodPost {
			writeStatus(w, http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed, "method not allowed")
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			f.t.Errorf("POST events: Content-Type %q", ct)
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			f.t.Error(err)
			return
		}
		var ev eventsv1.Event
		var raw map[string]any
		if err := json.Unmarshal(b, &ev); err != nil {
			writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, err.Error())
			return
		}
		_ = json.Unmarshal(b, &raw)
		switch {
		case strings.Contains(ev.Note, "forbid"):
			writeStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden,
				`events.events.k8s.io is forbidden: User "system:serviceaccount:kube-system:vipcast" cannot create resource "events" in API group "events.k8s.io" in the namespace "default"`)
			return
		case strings.Contains(ev.Note, "proxy"):
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusBadGateway)
			_, _ = io.WriteString(w, "upstream connect error\n")
			return
		}
		f.mu.Lock()
		f.events = append(f.events, ev)
		f.bodies = append(f.bodies, raw)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(b)
	default:
		writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, "the server could not find the requested resource")
	}
}

func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(metav1.Status{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Status"},
		Status:   metav1.StatusFailure, Message: msg, Reason: reason, Code: int32(code),
	})
}

// startAPIServer runs f over TLS and returns a rest.Config for it with a
// bearer token and the server's CA, as RESTConfig would shape it.
func startAPIServer(t *testing.T, f *fakeAPIServer) *rest.Config {
	t.Helper()
	f.t = t
	srv := httptest.NewTLSServer(f)
	t.Cleanup(srv.Close)
	return &rest.Config{
		Host:            srv.URL + f.prefix,
		BearerToken:     f.token,
		TLSClientConfig: rest.TLSClientConfig{CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})},
		Timeout:         RequestTimeout,
		QPS:             qps,
		Burst:           burst,
		UserAgent:       "vipcast",
	}
}

func TestHTTPAPI(t *testing.T) {
	for _, prefix := range []string{"", "/k8s/clusters/c-1"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			f := &fakeAPIServer{prefix: prefix, token: "s3cret"}
			rc := startAPIServer(t, f)
			api, err := NewForConfig(rc)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()

			// GET a Node.
			n, err := api.GetNode(ctx, "cp1")
			if err != nil {
				t.Fatal(err)
			}
			if n.Name != "cp1" || n.UID != "uid-cp1" || n.Labels["topology.kubernetes.io/zone"] != "a" || n.Status.Capacity.Cpu().Value() != 4 {
				t.Errorf("node %+v", n)
			}
			labels, err := NodeLabels(ctx, api, "cp1")
			if err != nil || labels["topology.kubernetes.io/zone"] != "a" {
				t.Errorf("labels %v err %v", labels, err)
			}

			// A missing Node: 404 with the API's Status.
			_, err = api.GetNode(ctx, "nope")
			var se *StatusError
			if !errors.Is(err, ErrNodeNotFound) || !errors.As(err, &se) || se.Code != 404 || se.Reason != metav1.StatusReasonNotFound {
				t.Errorf("missing node: %v", err)
			} else if want := "GET " + prefix + `/api/v1/nodes/nope: HTTP 404 Not Found: nodes "nope" not found`; !strings.Contains(err.Error(), want) {
				t.Errorf("missing node: %q, want it to contain %q", err, want)
			}

			// POST an Event.
			at := time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)
			ev := &eventsv1.Event{
				ObjectMeta:          metav1.ObjectMeta{Name: "cp1.1.1", Namespace: EventsNamespace},
				EventTime:           metav1.NewMicroTime(at),
				ReportingController: ReportingName, ReportingInstance: "vipcast-cp1",
				Action: "Announce", Reason: ReasonAnnounced, Type: corev1.EventTypeNormal,
				Note:      "VIP 203.0.113.10/32 announced",
				Regarding: corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: "cp1", UID: "uid-cp1"},
			}
			if err := api.CreateEvent(ctx, ev); err != nil {
				t.Fatal(err)
			}
			if ev.Kind != "" || ev.APIVersion != "" {
				t.Errorf("CreateEvent changed its argument: %+v", ev.TypeMeta)
			}
			f.mu.Lock()
			if len(f.events) != 1 {
				t.Fatalf("%d events stored, want 1", len(f.events))
			}
			got, raw := f.events[0], f.bodies[0]
			f.mu.Unlock()
			if raw["apiVersion"] != "events.k8s.io/v1" || raw["kind"] != "Event" || raw["eventTime"] != "2026-01-02T03:04:05.123456Z" {
				t.Errorf("body: apiVersion %v kind %v eventTime %v", raw["apiVersion"], raw["kind"], raw["eventTime"])
			}
			if got.Name != "cp1.1.1" || got.Namespace != "default" || got.Reason != ReasonAnnounced || got.Note != ev.Note ||
				got.Regarding != ev.Regarding || !got.EventTime.Equal(&ev.EventTime) || got.ReportingController != ReportingName {
				t.Errorf("stored event %+v", got)
			}

			// Refused: the Status's message; a proxy's plain text.
			ev.Note = "forbid"
			err = api.CreateEvent(ctx, ev)
			if !errors.As(err, &se) || se.Code != 403 || se.Reason != metav1.StatusReasonForbidden ||
				!strings.Contains(err.Error(), "POST "+prefix+"/apis/events.k8s.io/v1/namespaces/default/events: HTTP 403 Forbidden: events.events.k8s.io is forbidden: User") {
				t.Errorf("forbidden: %v", err)
			}
			ev.Note = "proxy"
			err = api.CreateEvent(ctx, ev)
			if !errors.As(err, &se) || se.Code != 502 || se.Reason != "" || !strings.HasSuffix(err.Error(), "HTTP 502 Bad Gateway: upstream connect error") {
				t.Errorf("bad gateway: %v", err)
			}

			// The context bounds a hung request.
			hctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			start := time.Now()
			if _, err := api.GetNode(hctx, "hang"); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("hung API: %v, want a deadline error", err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("hung API held GetNode %v", d)
			}

			f.mu.Lock()
			for _, a := range f.agents {
				if a != "vipcast" {
					t.Errorf("User-Agent %q", a)
				}
			}
			f.mu.Unlock()
		})
	}
}

// The status Leases are listed with resourceVersion=0, so the apiserver
// answers from its watch cache: a quorum read would fail while etcd is down
// or without quorum, when `status --all` is needed most.
func TestListLeasesFromCache(t *testing.T) {
	f := &fakeAPIServer{token: "t"}
	api, err := NewForConfig(startAPIServer(t, f))
	if err != nil {
		t.Fatal(err)
	}
	for _, selector := range []string{StatusSelector, ""} {
		leases, err := Leases(api).ListLeases(context.Background(), "kube-system", selector)
		if err != nil || len(leases) != 1 || leases[0].Name != "vipcast-cp1" {
			t.Fatalf("selector %q: %+v, %v", selector, leases, err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	want := []url.Values{
		{"resourceVersion": {"0"}, "labelSelector": {StatusSelector}},
		{"resourceVersion": {"0"}},
	}
	if d := cmp.Diff(want, f.queries); d != "" {
		t.Errorf("LIST queries (-want +got):\n%s", d)
	}
}

// A wrong token: 401 from the API, not a missing Node.
func TestHTTPAPIUnauthorized(t *testing.T) {
	rc := startAPIServer(t, &fakeAPIServer{token: "right"})
	rc.BearerToken = "wrong"
	api, err := NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	_, err = api.GetNode(context.Background(), "cp1")
	var se *StatusError
	if errors.Is(err, ErrNodeNotFound) || !errors.As(err, &se) || se.Code != 401 || !strings.HasSuffix(err.Error(), "HTTP 401 Unauthorized: Unauthorized") {
		t.Errorf("wrong token: %v", err)
	}
}

// The Events writer over HTTP, through a kubeconfig as vipcast is
// configured: the Node's UID is looked up and the Event lands.
func TestEventsOverHTTP(t *testing.T) {
	f := &fakeAPIServer{token: "t"} // writeKubeconfig's token
	rc := startAPIServer(t, f)
	kc := t.TempDir() + "/kubeconfig"
	writeKubeconfig(t, kc, rc.Host)
	api, src, err := NewClient(Config{Kubeconfig: kc}, func(string) string { return "" })
	if err != nil || !strings.HasPrefix(src, "kubeconfig ") {
		t.Fatalf("NewClient: %v (%s)", err, src)
	}
	e := NewEvents(api, "cp1", nil)
	e.OnTransition(speaker.Transition{At: time.Now(), Announce: true, From: speaker.ReasonStarting, To: speaker.ReasonHealthy}, decisions())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.Close(ctx)
	if e.Sent() != 1 || e.Dropped() != 0 {
		t.Fatalf("sent %d dropped %d", e.Sent(), e.Dropped())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.events) != 1 || f.events[0].Regarding.UID != "uid-cp1" || f.events[0].Reason != ReasonAnnounced {
		t.Errorf("events %+v", f.events)
	}
}
