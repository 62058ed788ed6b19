package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Client limits: vipcast makes a handful of requests per hour (one lookup
// at start, one Event per transition), and must never wait long on an API
// that may be down (its own node's apiserver, or the whole control plane
// during bootstrap).
const (
	// LookupTimeout bounds NodeLabels: startup never waits longer on the API.
	LookupTimeout = 2 * time.Second
	// RequestTimeout bounds every other request.
	RequestTimeout = 5 * time.Second
	dialTimeout    = 2 * time.Second
	qps            = 5
	burst          = 10
	// maxBody bounds what is read of an answer: a Node with a long image
	// list is some 100 KiB; an error's Status a few hundred bytes.
	maxBody      = 16 << 20
	maxErrorBody = 64 << 10
)

// ErrNoAPI says no Kubernetes API is configured or detectable.
var ErrNoAPI = errors.New("no Kubernetes API configured (kubernetes.kubeconfig empty, not in a pod, $KUBECONFIG unset)")

// ErrNodeNotFound says the API answered that there is no such Node.
var ErrNodeNotFound = errors.New("no such Node")

// API is the part of the Kubernetes API vipcast uses.
type API interface {
	// GetNode reads the Node called name.
	GetNode(ctx context.Context, name string) (*corev1.Node, error)
	// CreateEvent creates ev in its namespace.
	CreateEvent(ctx context.Context, ev *eventsv1.Event) error
}

// StatusError is an API answer other than success: the HTTP status and,
// when the API sent one, its Status's reason and message.
type StatusError struct {
	Request string              // method and path, for the log
	Code    int                 // HTTP status code
	Reason  metav1.StatusReason // e.g. NotFound, Forbidden; "" if the API sent no Status
	Message string              // the Status's message, else the start of the body
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("%s: HTTP %d %s", e.Request, e.Code, http.StatusText(e.Code))
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// RESTConfig resolves where the API is: kubernetes.kubeconfig if set, else
// the in-cluster configuration when KUBERNETES_SERVICE_HOST is set, else
// $KUBECONFIG; getenv is os.Getenv (a parameter for tests). It returns
// ErrNoAPI when there is none, and a description of the source for logs.
func RESTConfig(c Config, getenv func(string) string) (*rest.Config, string, error) {
	var rc *rest.Config
	var source string
	var err error
	switch {
	case c.Kubeconfig != "":
		source = "kubeconfig " + c.Kubeconfig
		rc, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	case getenv("KUBERNETES_SERVICE_HOST") != "":
		source = "in-cluster"
		rc, err = rest.InClusterConfig()
	case getenv("KUBECONFIG") != "":
		source = "$KUBECONFIG " + getenv("KUBECONFIG")
		rules := &clientcmd.ClientConfigLoadingRules{Precedence: filepath.SplitList(getenv("KUBECONFIG"))}
		rc, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	default:
		return nil, "", ErrNoAPI
	}
	if err != nil {
		return nil, source, fmt.Errorf("kubernetes client (%s): %w", source, err)
	}
	rc = rest.CopyConfig(rc)
	rc.Timeout = RequestTimeout
	rc.QPS, rc.Burst = qps, burst
	rc.UserAgent = "vipcast"
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	rc.Dial = d.DialContext
	return rc, source, nil
}

// NewClient builds the API client with short timeouts and a small QPS (see
// RESTConfig). Building it does not contact the API.
func NewClient(c Config, getenv func(string) string) (API, string, error) {
	rc, source, err := RESTConfig(c, getenv)
	if err != nil {
		return nil, source, err
	}
	api, err := NewForConfig(rc)
	if err != nil {
		return nil, source, fmt.Errorf("kubernetes client (%s): %w", source, err)
	}
	return api, source, nil
}

// NewForConfig builds an API over plain HTTP from rc: its transport
// (TLS, bearer token or token file, client certificates, exec plugins,
// Dial, user agent), its Timeout and, if rc.QPS > 0, a token bucket of
// rc.QPS and rc.Burst. It does not contact the API.
func NewForConfig(rc *rest.Config) (API, error) {
	base, _, err := rest.DefaultServerUrlFor(rc)
	if err != nil {
		return nil, err
	}
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		return nil, err
	}
	h := &httpAPI{client: hc, base: base}
	if rc.QPS > 0 {
		b := max(rc.Burst, 1)
		h.limit = rate.NewLimiter(rate.Limit(rc.QPS), b)
	}
	return h, nil
}

// httpAPI is API over the API server's REST paths, JSON only.
type httpAPI struct {
	client *http.Client
	base   *url.URL
	limit  *rate.Limiter // nil: no limit
}

func (h *httpAPI) GetNode(ctx context.Context, name string) (*corev1.Node, error) {
	var n corev1.Node
	err := h.do(ctx, http.MethodGet, []string{"api", "v1", "nodes", name}, nil, &n)
	var se *StatusError
	if errors.As(err, &se) && se.Code == http.StatusNotFound {
		return nil, fmt.Errorf("%w: %w", ErrNodeNotFound, err)
	}
	if err != nil {
		return nil, err
	}
	return &n, nil
}

func (h *httpAPI) CreateEvent(ctx context.Context, ev *eventsv1.Event) error {
	body := *ev
	body.TypeMeta = metav1.TypeMeta{APIVersion: eventsv1.SchemeGroupVersion.String(), Kind: "Event"}
	ns := ev.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	return h.do(ctx, http.MethodPost, []string{"apis", eventsv1.GroupName, "v1", "namespaces", ns, "events"}, &body, nil)
}

// do sends in (JSON, if not nil) to the path made of the escaped segments
// under the base URL and decodes a 2xx answer into out (if not nil). Any
// other answer is a *StatusError.
func (h *httpAPI) do(ctx context.Context, method string, segs []string, in, out any) error {
	return h.doQuery(ctx, method, segs, nil, in, out)
}

// doQuery is do with a query string (nil: none).
func (h *httpAPI) doQuery(ctx context.Context, method string, segs []string, query url.Values, in, out any) error {
	u := *h.base
	esc := make([]string, len(segs))
	for i, s := range segs {
		esc[i] = url.PathEscape(s)
	}
	u.RawPath = strings.TrimSuffix(u.EscapedPath(), "/") + "/" + strings.Join(esc, "/")
	u.Path, _ = url.PathUnescape(u.RawPath)
	u.RawQuery = query.Encode()
	reqName := method + " " + u.RawPath

	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s: %w", reqName, err)
		}
		body = bytes.NewReader(b)
	}
	if h.limit != nil {
		if err := h.limit.Wait(ctx); err != nil {
			return fmt.Errorf("%s: client rate limit: %w", reqName, err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return fmt.Errorf("%s: %w", reqName, err)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return err // *url.Error: names the method and URL
	}
	err = readAnswer(reqName, resp, out)
	var se *StatusError
	if err != nil && ctx.Err() != nil && !errors.As(err, &se) {
		// A body cut short by giving up: say so.
		return fmt.Errorf("%s: %w (%v)", reqName, context.Cause(ctx), err)
	}
	return err
}

// readAnswer decodes a 2xx answer into out (if not nil), else returns a
// *StatusError, and closes the body.
func readAnswer(reqName string, resp *http.Response, out any) error {
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody)) // reuse the connection
		resp.Body.Close()
	}()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return statusError(reqName, resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(out); err != nil {
		return fmt.Errorf("%s: decoding the answer: %w", reqName, err)
	}
	return nil
}

// statusError reads the API's Status from an error answer if it sent one,
// else keeps the start of the body as the message.
func statusError(reqName string, resp *http.Response) *StatusError {
	se := &StatusError{Code: resp.StatusCode, Request: reqName}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	var st metav1.Status
	if mt == "application/json" && json.Unmarshal(b, &st) == nil && st.Kind == "Status" {
		se.Reason, se.Message = st.Reason, st.Message
		return se
	}
	msg := strings.TrimSpace(strings.ToValidUTF8(string(b), "?"))
	if len(msg) > 256 {
		msg = msg[:256] + "..."
	}
	se.Message = msg
	return se
}

// GetNode reads the Node object, waiting at most LookupTimeout. A missing
// Node is an error wrapping ErrNodeNotFound.
func GetNode(ctx context.Context, client API, name string) (*corev1.Node, error) {
	if client == nil {
		return nil, ErrNoAPI
	}
	ctx, cancel := context.WithTimeout(ctx, LookupTimeout)
	defer cancel()
	n, err := client.GetNode(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", name, err)
	}
	return n, nil
}

// NodeLabels returns the labels of the Node called name, waiting at most
// LookupTimeout (about 2 s) so a start without an API (bootstrap, static
// pod, the control plane down) is never held up. The map is a copy and
// never nil on success.
func NodeLabels(ctx context.Context, client API, name string) (map[string]string, error) {
	n, err := GetNode(ctx, client, name)
	if err != nil {
		return nil, err
	}
	out := maps.Clone(n.Labels)
	if out == nil {
		out = map[string]string{}
	}
	return out, nil
}
