package apiserver

// Conversion of the speaker's status to the API's messages.

import (
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vipcast/vipcast/peers"
	"github.com/vipcast/vipcast/speaker"
	apiv1 "github.com/vipcast/vipcast/speaker/api/v1"
)

func (s *Server) snapshot(now time.Time) *apiv1.GetStatusResponse {
	st := s.sp.Status()
	out := &apiv1.GetStatusResponse{
		Version:        s.opt.Version,
		ConfigDigest:   s.opt.ConfigDigest,
		Drained:        st.Drained,
		DrainReason:    st.DrainReason,
		DampingPenalty: st.Penalty,
		Health: &apiv1.HealthStatus{
			OkRun: int32(st.OKRun), FailRun: int32(st.FailRun),
			Rise: int32(st.Rise), Fall: int32(st.Fall), TimeoutFall: int32(st.TimeoutFall),
		},
	}
	for _, d := range st.Decisions {
		out.Vips = append(out.Vips, &apiv1.VipStatus{
			Prefix: d.VIP.String(), Announce: d.Announce, Advertised: d.Advertised,
			Reason: string(d.Reason), Since: ts(d.Since),
		})
	}
	for _, r := range st.RecentProbes {
		out.Health.Recent = append(out.Health.Recent, &apiv1.ProbeResult{
			At: ts(r.At), Latency: durationpb.New(r.Latency), Ok: r.OK, HttpCode: int32(r.Code), Reason: r.Reason, TimedOut: r.TimedOut,
		})
	}
	for _, p := range st.Peers {
		ps := &apiv1.PeerStatus{
			Address: p.Address.String(), Asn: p.ASN, State: SessionStatePB(p.State),
			Since: ts(p.Since), PrefixesSent: uint32(max(p.PrefixesSent, 0)), LastError: p.LastError,
		}
		if p.State == peers.StateEstablished && !p.Since.IsZero() {
			ps.Uptime = durationpb.New(now.Sub(p.Since).Truncate(time.Second))
		}
		ps.Bfd = bfdPB(p.BFD)
		out.Peers = append(out.Peers, ps)
	}
	for _, t := range st.Transitions {
		out.Transitions = append(out.Transitions, transitionPB(t))
	}
	return out
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// bfdPB converts a peer's BFD session; nil (BFD off) stays unset. States
// are lower case (admindown, down, init, up), as the API documents.
func bfdPB(b *peers.BFDStatus) *apiv1.BFDStatus {
	if b == nil {
		return nil
	}
	return &apiv1.BFDStatus{
		State: strings.ToLower(b.State), RemoteState: strings.ToLower(b.RemoteState), Diag: b.Diag, Since: ts(b.Since),
		TxInterval: durationpb.New(b.TxInterval), DetectTime: durationpb.New(b.DetectTime),
		RxPackets: b.RxPackets, TxPackets: b.TxPackets, Flaps: b.Flaps,
	}
}

func transitionPB(t speaker.Transition) *apiv1.Transition {
	return &apiv1.Transition{At: ts(t.At), Announce: t.Announce, FromReason: string(t.From), ToReason: string(t.To), Detail: t.Detail}
}

// SessionStatePB maps a session state to the API's enum.
func SessionStatePB(s peers.SessionState) apiv1.SessionState {
	switch s {
	case peers.StateIdle:
		return apiv1.SessionState_SESSION_STATE_IDLE
	case peers.StateConnect:
		return apiv1.SessionState_SESSION_STATE_CONNECT
	case peers.StateActive:
		return apiv1.SessionState_SESSION_STATE_ACTIVE
	case peers.StateOpenSent:
		return apiv1.SessionState_SESSION_STATE_OPENSENT
	case peers.StateOpenConfirm:
		return apiv1.SessionState_SESSION_STATE_OPENCONFIRM
	case peers.StateEstablished:
		return apiv1.SessionState_SESSION_STATE_ESTABLISHED
	}
	return apiv1.SessionState_SESSION_STATE_UNSPECIFIED
}
