package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/metcd/metcd/lease"
)

// Requests only the leader can answer (lease keepalives and time-to-live,
// whose clocks run on the leader, and learner promotion, which needs the
// leader's view of the learner's log) are forwarded to it over the peer
// port, as etcd does. Bodies are protobuf; errors travel as gRPC code and
// message.
const (
	pathRenew   = "/metcd/v3/lease/renew"
	pathTTL     = "/metcd/v3/lease/ttl"
	pathPromote = "/metcd/v3/member/promote"
)

type forwardError struct {
	Code    codes.Code `json:"code"`
	Message string     `json:"message"`
}

func (s *Server) peerHandlers() map[string]http.Handler {
	return map[string]http.Handler{
		pathRenew: s.forwarded(func() proto.Message { return &pb.LeaseKeepAliveRequest{} },
			func(ctx context.Context, m proto.Message) (proto.Message, error) {
				id := m.(*pb.LeaseKeepAliveRequest).ID
				ttl, err := s.renewHere(ctx, id)
				if err != nil {
					return nil, err
				}
				return &pb.LeaseKeepAliveResponse{ID: id, TTL: ttl}, nil
			}),
		pathTTL: s.forwarded(func() proto.Message { return &pb.LeaseTimeToLiveRequest{} },
			func(ctx context.Context, m proto.Message) (proto.Message, error) {
				return s.timeToLiveHere(ctx, m.(*pb.LeaseTimeToLiveRequest))
			}),
		pathPromote: s.forwarded(func() proto.Message { return &pb.MemberPromoteRequest{} },
			func(ctx context.Context, m proto.Message) (proto.Message, error) {
				if !s.isLeader() {
					return nil, rpctypes.ErrGRPCNotLeader
				}
				return s.promoteHere(ctx, m.(*pb.MemberPromoteRequest))
			}),
	}
}

func (s *Server) forwarded(newReq func() proto.Message, fn func(context.Context, proto.Message) (proto.Message, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		req := newReq()
		if err == nil {
			err = proto.Unmarshal(body, req)
		}
		if err != nil {
			writeForwardError(w, status.Error(codes.InvalidArgument, err.Error()))
			return
		}
		resp, err := fn(r.Context(), req)
		if err != nil {
			writeForwardError(w, err)
			return
		}
		out, err := proto.Marshal(resp)
		if err != nil {
			writeForwardError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/protobuf")
		w.Write(out)
	})
}

func writeForwardError(w http.ResponseWriter, err error) {
	fe := forwardError{Code: codes.Unknown, Message: err.Error()}
	switch {
	case errors.Is(err, lease.ErrLeaseNotFound):
		fe = forwardError{Code: codes.NotFound, Message: rpctypes.ErrGRPCLeaseNotFound.Error()}
	case errors.Is(err, lease.ErrNotPrimary):
		fe = forwardError{Code: codes.Unavailable, Message: rpctypes.ErrGRPCNotLeader.Error()}
	default:
		if st, ok := status.FromError(err); ok {
			fe = forwardError{Code: st.Code(), Message: st.Message()}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusConflict)
	json.NewEncoder(w).Encode(fe)
}

// forward sends req to member to's peer port and decodes its answer into
// resp. A lease the leader does not know comes back as
// lease.ErrLeaseNotFound; other errors as the gRPC status the leader gave.
func (s *Server) forward(ctx context.Context, to uint64, path string, req, resp proto.Message) error {
	s.memMu.RLock()
	m, ok := s.members[to]
	s.memMu.RUnlock()
	if !ok {
		return ErrNoLeader
	}
	body, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, m.PeerURL+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	hr.Header.Set("Content-Type", "application/protobuf")
	res, err := s.peerClient.Do(hr)
	if err != nil {
		return fmt.Errorf("%w: forward to leader %d: %v", ErrNoLeader, to, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%w: forward to leader %d: %v", ErrNoLeader, to, err)
	}
	if res.StatusCode == http.StatusConflict {
		var fe forwardError
		if err := json.Unmarshal(data, &fe); err != nil {
			return fmt.Errorf("forward to leader %d: bad error body: %w", to, err)
		}
		if fe.Code == codes.NotFound && fe.Message == rpctypes.ErrGRPCLeaseNotFound.Error() {
			return lease.ErrLeaseNotFound
		}
		return status.Error(fe.Code, fe.Message)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: forward to leader %d: HTTP %d", ErrNoLeader, to, res.StatusCode)
	}
	return proto.Unmarshal(data, resp)
}
