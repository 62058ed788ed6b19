package apiserver

// The vipcast.v1 service, one instance per listener.

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/vipcast/vipcast/speaker"
	apiv1 "github.com/vipcast/vipcast/speaker/api/v1"
)

// service implements the API for one listener.
type service struct {
	apiv1.UnimplementedVipcastServiceServer
	s           *Server
	readOnly    bool
	readOnlyKey string
}

func (v *service) GetStatus(context.Context, *apiv1.GetStatusRequest) (*apiv1.GetStatusResponse, error) {
	return v.s.snapshot(time.Now()), nil
}

func (v *service) WatchStatus(_ *apiv1.WatchStatusRequest, stream grpc.ServerStreamingServer[apiv1.WatchStatusResponse]) error {
	if err := acquireWatch(&v.s.counters.watches, v.s.limits.MaxWatches, "WatchStatus"); err != nil {
		v.s.rejectWatch(stream.Context(), "watch")
		return err
	}
	defer v.s.counters.watches.Add(-1)
	sub := v.s.sp.Subscribe(stream.Context())
	// Headers now tell the client it is subscribed: every later transition
	// reaches it (stream.Header() returns once this arrives).
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	var seen uint64
	for tr := range sub.C {
		d := sub.Dropped()
		if err := stream.Send(&apiv1.WatchStatusResponse{Transition: transitionPB(tr), Dropped: d - seen}); err != nil {
			return err
		}
		seen = d
	}
	if err := stream.Context().Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Unavailable, "vipcast stopped")
}

func (v *service) Drain(ctx context.Context, req *apiv1.DrainRequest) (*apiv1.DrainResponse, error) {
	p, w, err := v.setDrained(ctx, true, req.GetReason())
	if err != nil {
		return nil, err
	}
	return &apiv1.DrainResponse{Persisted: p, Warning: w}, nil
}

func (v *service) Undrain(ctx context.Context, req *apiv1.UndrainRequest) (*apiv1.UndrainResponse, error) {
	p, w, err := v.setDrained(ctx, false, req.GetReason())
	if err != nil {
		return nil, err
	}
	return &apiv1.UndrainResponse{Persisted: p, Warning: w}, nil
}

// StateFileDisabled is the warning of a Drain or Undrain answered with
// persisted false because api.stateFile is "" on purpose, as opposed to a
// state file that could not be written. Clients match it exactly.
const StateFileDisabled = "api.stateFile is empty: this will not survive a restart of vipcast"

func (v *service) setDrained(ctx context.Context, drained bool, reason string) (persisted bool, warning string, err error) {
	verb := "undrain"
	if drained {
		verb = "drain"
	}
	if v.readOnly {
		return false, "", status.Errorf(codes.PermissionDenied, "this listener is read-only (%s: true): %s refused; use a listener without readOnly (e.g. the unix socket)", v.readOnlyKey, verb)
	}
	if err := speaker.CheckDrainReason(reason); err != nil {
		return false, "", status.Errorf(codes.InvalidArgument, "%s refused: %v", verb, err)
	}
	v.s.opt.Log.Info("operator request", "action", verb, "reason", reason, "client", clientName(ctx))
	err = v.s.sp.SetDrainedReason(ctx, drained, reason)
	var pe *speaker.PersistError
	switch {
	case errors.As(err, &pe):
		return false, pe.Error(), nil
	case err != nil:
		if ctx.Err() != nil {
			return false, "", status.FromContextError(ctx.Err()).Err()
		}
		return false, "", status.Errorf(codes.Unavailable, "%s: %v", verb, err)
	}
	if v.s.cfg.StateFile == "" {
		return false, StateFileDisabled, nil
	}
	return true, "", nil
}

// clientName names the caller for the log: its certificate's subject on
// TCP, "unix socket" otherwise.
func clientName(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "unknown"
	}
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
		return ti.State.PeerCertificates[0].Subject.String()
	}
	return p.Addr.Network() + " " + p.Addr.String()
}
