package gateway

import (
	"context"
	"fmt"
	"math"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/tmc/grpc-websocket-proxy/wsproxy"
	"go.etcd.io/etcd/api/v3/etcdserverpb/gw"
	electiongw "go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb/gw"
	lockgw "go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb/gw"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
)

// Gateway is an http.Handler for the /v3/ paths.
type Gateway struct {
	h    http.Handler
	conn *grpc.ClientConn
}

// New returns a gateway that forwards to the gRPC API at target
// (host:port of this member's client port). The connection is made on
// first use. Close releases it. lg gets the websocket proxy's messages.
func New(target string, lg *zap.Logger) (*Gateway, error) {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		// As etcd's gateway: a large range is not cut at gRPC's default
		// 4 MiB of response.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)))
	if err != nil {
		return nil, fmt.Errorf("gateway: client of %s: %w", target, err)
	}
	// The JSON etcd's gateway speaks: field names as in the .proto files,
	// zero values left out, unknown fields ignored.
	mux := runtime.NewServeMux(runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.HTTPBodyMarshaler{
		Marshaler: &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
		},
	}))
	for _, register := range []func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
		gw.RegisterKVHandler,
		gw.RegisterWatchHandler,
		gw.RegisterLeaseHandler,
		gw.RegisterClusterHandler,
		gw.RegisterMaintenanceHandler,
		gw.RegisterAuthHandler,
		lockgw.RegisterLockHandler,
		electiongw.RegisterElectionHandler,
	} {
		// The context only serves to close streams when it ends; requests
		// carry their own.
		if err := register(context.Background(), mux, conn); err != nil {
			conn.Close()
			return nil, fmt.Errorf("gateway: register: %w", err)
		}
	}
	// As etcd's gateway, a websocket upgrade of any path (browsers cannot
	// stream a POST body) becomes a POST stream: each text message is one
	// request object, each response one message. Other requests pass.
	h := wsproxy.WebsocketProxy(mux,
		wsproxy.WithRequestMutator(func(_ *http.Request, out *http.Request) *http.Request {
			out.Method = http.MethodPost
			return out
		}),
		wsproxy.WithMaxRespBodyBufferSize(math.MaxInt32),
		wsproxy.WithLogger(wsLogger{lg.Sugar()}),
	)
	return &Gateway{h: h, conn: conn}, nil
}

// wsLogger gives the websocket proxy's messages to zap.
type wsLogger struct{ s *zap.SugaredLogger }

func (l wsLogger) Warnln(args ...any)  { l.s.Warn(args...) }
func (l wsLogger) Debugln(args ...any) { l.s.Debug(args...) }

// ServeHTTP serves one gateway request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.h.ServeHTTP(w, r) }

// Close closes the connection to the gRPC API.
func (g *Gateway) Close() error { return g.conn.Close() }
