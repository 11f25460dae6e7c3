package recipes

import (
	"context"

	"go.etcd.io/etcd/client/v3/concurrency"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
)

type lockServer struct {
	v3lockpb.UnimplementedLockServer
	s *Services
}

// Lock waits until the caller holds the named lock, and returns the key
// that stands for its hold: it lives as long as the lease, or until
// Unlock. A caller that gives up while waiting leaves no key behind.
func (l lockServer) Lock(ctx context.Context, r *v3lockpb.LockRequest) (*v3lockpb.LockResponse, error) {
	ss, err := l.s.session(ctx, r.Lease)
	if err != nil {
		return nil, toStatus(err)
	}
	m := concurrency.NewMutex(ss, string(r.Name))
	if err := m.Lock(ctx); err != nil {
		return nil, toStatus(err)
	}
	return &v3lockpb.LockResponse{Header: m.Header(), Key: []byte(m.Key())}, nil
}

// Unlock deletes the key Lock returned, which lets the next waiter in.
func (l lockServer) Unlock(ctx context.Context, r *v3lockpb.UnlockRequest) (*v3lockpb.UnlockResponse, error) {
	resp, err := l.s.cli.Delete(ctx, string(r.Key))
	if err != nil {
		return nil, toStatus(err)
	}
	return &v3lockpb.UnlockResponse{Header: resp.Header}, nil
}
