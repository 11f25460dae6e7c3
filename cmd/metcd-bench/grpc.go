package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The gRPC protocol: the etcd v3 API through go.etcd.io/etcd/client/v3, so
// the same run can be made against metcd and against etcd.
//
// Like etcd's own benchmark tool, --conns clientv3 clients (each one gRPC
// connection) are opened, connection i to endpoint i mod the number of
// endpoints (or all to the leader with --target-leader), and client w of
// --clients uses connection w mod --conns.

// watchConn is a connection the watch workload opens its streams on.
type watchConn = *clientv3.Client

// dialTimeout bounds the opening of each connection.
const dialTimeout = 5 * time.Second

func newClient(endpoints []string) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: dialTimeout,
		Logger:      zap.NewNop(),
		// No AutoSyncInterval: a connection stays on the endpoint it was given.
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to %v: %w", endpoints, err)
	}
	return cli, nil
}

// findLeader returns the endpoint whose member is the leader.
func findLeader(ctx context.Context, endpoints []string) (string, error) {
	cli, err := newClient(endpoints)
	if err != nil {
		return "", err
	}
	defer cli.Close()
	var errs []error
	for _, ep := range endpoints {
		sctx, cancel := context.WithTimeout(ctx, dialTimeout)
		st, err := cli.Status(sctx, ep)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ep, err))
			continue
		}
		if st.Leader != 0 && st.Header != nil && st.Header.MemberId == st.Leader {
			return ep, nil
		}
	}
	return "", fmt.Errorf("no endpoint is the leader: %w", errors.Join(errs...))
}

// dialGRPC opens conns clients spread over endpoints (or all on the leader).
// It returns them and the endpoints they were opened on.
func dialGRPC(ctx context.Context, endpoints []string, conns int, targetLeader bool) ([]*clientv3.Client, []string, error) {
	if targetLeader {
		leader, err := findLeader(ctx, endpoints)
		if err != nil {
			return nil, nil, err
		}
		endpoints = []string{leader}
	}
	var clis []*clientv3.Client
	for i := range conns {
		cli, err := newClient([]string{endpoints[i%len(endpoints)]})
		if err != nil {
			for _, c := range clis {
				c.Close()
			}
			return nil, nil, err
		}
		clis = append(clis, cli)
	}
	return clis, endpoints, nil
}

// grpcTarget is one connection's view of the system under test.
type grpcTarget struct {
	cli      *clientv3.Client
	rangeOpt []clientv3.OpOption
}

func newGRPCTarget(cli *clientv3.Client, serializable bool) *grpcTarget {
	t := &grpcTarget{cli: cli}
	if serializable {
		t.rangeOpt = []clientv3.OpOption{clientv3.WithSerializable()}
	}
	return t
}

func (t *grpcTarget) Put(ctx context.Context, key, value []byte) error {
	_, err := t.cli.Put(ctx, string(key), string(value))
	return err
}

func (t *grpcTarget) Get(ctx context.Context, key []byte) error {
	resp, err := t.cli.Get(ctx, string(key), t.rangeOpt...)
	if err != nil {
		return err
	}
	if len(resp.Kvs) == 0 {
		return errNotFound
	}
	return nil
}

func (t *grpcTarget) CAS(ctx context.Context, key, value []byte, c casCompare) (casResult, error) {
	k := string(key)
	var cmp clientv3.Cmp
	if c.byValue {
		cmp = clientv3.Compare(clientv3.Value(k), "=", string(c.value))
	} else {
		cmp = clientv3.Compare(clientv3.ModRevision(k), "=", c.modRev)
	}
	resp, err := t.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(k, string(value))).Else(clientv3.OpGet(k, t.rangeOpt...)).Commit()
	if err != nil {
		return casResult{}, err
	}
	if resp.Succeeded {
		return casResult{Swapped: true, ModRev: resp.Header.Revision}, nil
	}
	var res casResult
	if len(resp.Responses) == 1 {
		if rr := resp.Responses[0].GetResponseRange(); rr != nil && len(rr.Kvs) > 0 {
			res.ModRev = rr.Kvs[0].ModRevision
		}
	}
	return res, nil
}

func (t *grpcTarget) PutBatch(ctx context.Context, keys [][]byte, value []byte) error {
	ops := make([]clientv3.Op, len(keys))
	v := string(value)
	for i, k := range keys {
		ops[i] = clientv3.OpPut(string(k), v)
	}
	_, err := t.cli.Txn(ctx).Then(ops...).Commit()
	return err
}
