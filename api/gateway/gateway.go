package gateway

import (
	"context"
	"fmt"
	"math"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.etcd.io/etcd/api/v3/etcdserverpb/gw"
	electiongw "go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb/gw"
	lockgw "go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb/gw"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
)

// Gateway is an http.Handler for the /v3/ paths.
type Gateway struct {
	mux  *runtime.ServeMux
	conn *grpc.ClientConn
}

// New returns a gateway that forwards to the gRPC API at target
// (host:port of this member's client port). The connection is made on
// first use. Close releases it.
func New(target string) (*Gateway, error) {
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
	return &Gateway{mux: mux, conn: conn}, nil
}

// ServeHTTP serves one gateway request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.mux.ServeHTTP(w, r) }

// Close closes the connection to the gRPC API.
func (g *Gateway) Close() error { return g.conn.Close() }
