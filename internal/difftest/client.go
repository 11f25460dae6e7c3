package difftest

import (
	"context"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Target answers requests: an etcd, a metcd member, a Store.
type Target interface {
	// Do sends op's request and returns the response (one of
	// *pb.RangeResponse, *pb.PutResponse, *pb.DeleteRangeResponse,
	// *pb.TxnResponse, *pb.CompactionResponse) or a gRPC status error.
	Do(ctx context.Context, op Op) (proto.Message, error)
}

// Client is the Target of an etcd v3 gRPC server (etcd or metcd), reached
// through the raw etcdserverpb clients on a clientv3 connection, so that
// every request field reaches the server as generated (clientv3's KV API
// would fill or drop some).
type Client struct {
	KV    pb.KVClient
	Lease pb.LeaseClient
	// Barrier makes Do send a linearizable read before each request the
	// server may answer from the local state of the member it reaches
	// (Op.Serializable), on the same connection: the member has then
	// applied every write acknowledged before, as a single etcd member
	// always has, so that its answer is deterministic.
	Barrier bool
}

// NewClient returns the Client of cli's connection.
func NewClient(cli *clientv3.Client) *Client {
	conn := cli.ActiveConnection()
	return &Client{KV: pb.NewKVClient(conn), Lease: pb.NewLeaseClient(conn)}
}

// Do implements Target.
func (c *Client) Do(ctx context.Context, op Op) (proto.Message, error) {
	if c.Barrier && op.Serializable() {
		if _, err := c.KV.Range(ctx, &pb.RangeRequest{Key: []byte{0}, CountOnly: true}); err != nil {
			return nil, fmt.Errorf("difftest: read barrier: %w", err)
		}
	}
	var (
		resp proto.Message
		err  error
	)
	switch r := op.Req.(type) {
	case *pb.RangeRequest:
		resp, err = c.KV.Range(ctx, r)
	case *pb.PutRequest:
		resp, err = c.KV.Put(ctx, r)
	case *pb.DeleteRangeRequest:
		resp, err = c.KV.DeleteRange(ctx, r)
	case *pb.TxnRequest:
		resp, err = c.KV.Txn(ctx, r)
	case *pb.CompactionRequest:
		resp, err = c.KV.Compact(ctx, r)
	default:
		return nil, fmt.Errorf("difftest: unknown request %T", op.Req)
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// GrantLease grants the lease id with a ttl in seconds.
func (c *Client) GrantLease(ctx context.Context, id, ttl int64) (*pb.LeaseGrantResponse, error) {
	return c.Lease.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: id, TTL: ttl})
}

// RevokeLease revokes the lease id, deleting its keys.
func (c *Client) RevokeLease(ctx context.Context, id int64) (*pb.LeaseRevokeResponse, error) {
	return c.Lease.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: id})
}

// ComparePath evaluates the compares of req, then depth first those of
// the nested txns in the branch each chose, as etcd does before it runs a
// txn (all against the state before it), by sending them as txns without
// ops. It returns the outcomes in that order, as PanicsEtcd wants them.
// An error means the server refused a compare (etcd then refuses req).
func (c *Client) ComparePath(ctx context.Context, req *pb.TxnRequest) ([]bool, error) {
	var path []bool
	var walk func(t *pb.TxnRequest) error
	walk = func(t *pb.TxnRequest) error {
		resp, err := c.KV.Txn(ctx, &pb.TxnRequest{Compare: t.GetCompare()})
		if err != nil {
			return err
		}
		path = append(path, resp.GetSucceeded())
		for _, op := range branch(t, resp.GetSucceeded()) {
			if n := op.GetRequestTxn(); n != nil {
				if err := walk(n); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(req); err != nil {
		return nil, err
	}
	return path, nil
}

// PanicsEtcd reports whether the etcd (v3.7.3) behind c would accept req
// and panic applying it (see PanicsEtcd), evaluating its compares with
// ComparePath when MayPanicEtcd cannot rule it out.
func (c *Client) PanicsEtcd(ctx context.Context, req *pb.TxnRequest) (bool, error) {
	if !MayPanicEtcd(req) {
		return false, nil
	}
	path, err := c.ComparePath(ctx, req)
	if status.Code(err) == codes.InvalidArgument {
		return false, nil // a compare etcd refuses: so is req, before it is applied
	}
	if err != nil {
		return false, err
	}
	return PanicsEtcd(req, path), nil
}
