package kube

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LeaseAPI is the part of the Kubernetes API the status Leases use: the
// speaker's publisher (get, create, update its own Lease) and `vipcast
// status --all` (list). The client NewClient builds implements it; Leases
// returns it.
type LeaseAPI interface {
	// GetLease reads a Lease; a missing one is an error wrapping ErrNotFound.
	GetLease(ctx context.Context, namespace, name string) (*coordinationv1.Lease, error)
	// CreateLease creates l in its namespace and returns what the API stored.
	CreateLease(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error)
	// UpdateLease replaces l (optimistic: l.ResourceVersion must be the
	// current one, else an error wrapping ErrConflict).
	UpdateLease(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error)
	// ListLeases lists the Leases of namespace matching the label
	// selector, from the apiserver's cache (see httpAPI.ListLeases).
	ListLeases(ctx context.Context, namespace, selector string) ([]coordinationv1.Lease, error)
}

var (
	// ErrNotFound says the API answered 404 for the object.
	ErrNotFound = errors.New("not found")
	// ErrConflict says the object changed since it was read (HTTP 409).
	ErrConflict = errors.New("conflict")
)

// Leases returns the Lease calls of api, or nil if it has none (a test
// fake of API only).
func Leases(api API) LeaseAPI {
	l, _ := api.(LeaseAPI)
	return l
}

var _ LeaseAPI = (*httpAPI)(nil)

func leaseSegs(namespace string, name ...string) []string {
	return append([]string{"apis", coordinationv1.GroupName, "v1", "namespaces", namespace, "leases"}, name...)
}

// objectError wraps 404 and 409 answers in ErrNotFound and ErrConflict.
func objectError(err error) error {
	var se *StatusError
	if errors.As(err, &se) {
		switch se.Code {
		case http.StatusNotFound:
			return fmt.Errorf("%w: %w", ErrNotFound, err)
		case http.StatusConflict:
			return fmt.Errorf("%w: %w", ErrConflict, err)
		}
	}
	return err
}

func (h *httpAPI) GetLease(ctx context.Context, namespace, name string) (*coordinationv1.Lease, error) {
	var l coordinationv1.Lease
	if err := h.do(ctx, http.MethodGet, leaseSegs(namespace, name), nil, &l); err != nil {
		return nil, objectError(err)
	}
	return &l, nil
}

func (h *httpAPI) CreateLease(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	body := *l
	body.TypeMeta = metav1.TypeMeta{APIVersion: coordinationv1.SchemeGroupVersion.String(), Kind: "Lease"}
	var out coordinationv1.Lease
	if err := h.do(ctx, http.MethodPost, leaseSegs(l.Namespace), &body, &out); err != nil {
		return nil, objectError(err)
	}
	return &out, nil
}

func (h *httpAPI) UpdateLease(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	body := *l
	body.TypeMeta = metav1.TypeMeta{APIVersion: coordinationv1.SchemeGroupVersion.String(), Kind: "Lease"}
	var out coordinationv1.Lease
	if err := h.do(ctx, http.MethodPut, leaseSegs(l.Namespace, l.Name), &body, &out); err != nil {
		return nil, objectError(err)
	}
	return &out, nil
}

// ListLeases asks for resourceVersion=0: "any version", which the
// apiserver serves from its watch cache without a quorum read of etcd. The
// list may then lag the latest writes by the cache's delay (milliseconds
// normally), and it still answers when etcd is down or has lost quorum,
// which is exactly when an operator runs `status --all`; a quorum LIST
// would fail then. Each Lease's renewTime says how old its row is.
func (h *httpAPI) ListLeases(ctx context.Context, namespace, selector string) ([]coordinationv1.Lease, error) {
	q := url.Values{"resourceVersion": {"0"}}
	if selector != "" {
		q.Set("labelSelector", selector)
	}
	var out coordinationv1.LeaseList
	if err := h.doQuery(ctx, http.MethodGet, leaseSegs(namespace), q, nil, &out); err != nil {
		return nil, objectError(err)
	}
	return out.Items, nil
}
