package recipes

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
)

// An election named n is the keys under n + "/", one per campaigner,
// each attached to the campaigner's lease; the leader is the one created
// first, and its value is the election's proclamation. This is the layout
// of concurrency.Election.

type electionServer struct {
	v3electionpb.UnimplementedElectionServer
	s *Services
}

func prefix(name []byte) string { return string(name) + "/" }

// Campaign waits until the caller leads the election and returns its
// leader key.
func (e electionServer) Campaign(ctx context.Context, r *v3electionpb.CampaignRequest) (*v3electionpb.CampaignResponse, error) {
	ss, err := e.s.session(ctx, r.Lease)
	if err != nil {
		return nil, toStatus(err)
	}
	el := concurrency.NewElection(ss, string(r.Name))
	if err := el.Campaign(ctx, string(r.Value)); err != nil {
		return nil, toStatus(err)
	}
	return &v3electionpb.CampaignResponse{
		Header: el.Header(),
		Leader: &v3electionpb.LeaderKey{Name: r.Name, Key: []byte(el.Key()), Rev: el.Rev(), Lease: int64(ss.Lease())},
	}, nil
}

// held is the compare that holds while the leader key is the one that
// campaign created: the leadership has not been resigned or lost to the
// lease's expiry since.
func held(l *v3electionpb.LeaderKey) clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(string(l.Key)), "=", l.Rev)
}

// Proclaim changes the leader's value, if the caller still leads.
func (e electionServer) Proclaim(ctx context.Context, r *v3electionpb.ProclaimRequest) (*v3electionpb.ProclaimResponse, error) {
	if r.Leader == nil {
		return nil, errMissingLeader
	}
	resp, err := e.s.cli.Txn(ctx).If(held(r.Leader)).
		Then(clientv3.OpPut(string(r.Leader.Key), string(r.Value), clientv3.WithLease(clientv3.LeaseID(r.Leader.Lease)))).
		Commit()
	if err != nil {
		return nil, toStatus(err)
	}
	if !resp.Succeeded {
		return nil, errNotLeader
	}
	return &v3electionpb.ProclaimResponse{Header: resp.Header}, nil
}

// Resign gives up the leadership, if the caller still holds it; resigning
// a leadership already lost is not an error.
func (e electionServer) Resign(ctx context.Context, r *v3electionpb.ResignRequest) (*v3electionpb.ResignResponse, error) {
	if r.Leader == nil {
		return nil, errMissingLeader
	}
	resp, err := e.s.cli.Txn(ctx).If(held(r.Leader)).Then(clientv3.OpDelete(string(r.Leader.Key))).Commit()
	if err != nil {
		return nil, toStatus(err)
	}
	return &v3electionpb.ResignResponse{Header: resp.Header}, nil
}

// leader reads the current leader's key: the first of resp.Kvs, which is
// empty when nobody leads.
func (e electionServer) leader(ctx context.Context, name []byte) (*clientv3.GetResponse, error) {
	return e.s.cli.Get(ctx, prefix(name), clientv3.WithFirstCreate()...)
}

// Leader returns the current leader's key and value.
func (e electionServer) Leader(ctx context.Context, r *v3electionpb.LeaderRequest) (*v3electionpb.LeaderResponse, error) {
	resp, err := e.leader(ctx, r.Name)
	if err != nil {
		return nil, toStatus(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, errNoLeader
	}
	return &v3electionpb.LeaderResponse{Header: resp.Header, Kv: resp.Kvs[0]}, nil
}

// Observe streams the leader's key and value: at once if there is a
// leader, then at every proclamation and every change of leader, in
// revision order, until the caller goes away.
func (e electionServer) Observe(r *v3electionpb.LeaderRequest, stream v3electionpb.Election_ObserveServer) error {
	ctx := stream.Context()
	for {
		resp, err := e.leader(ctx, r.Name)
		if err != nil {
			return toStatus(err)
		}
		var hdr *pb.ResponseHeader
		var kv *mvccpb.KeyValue
		if len(resp.Kvs) > 0 {
			hdr, kv = resp.Header, resp.Kvs[0]
		} else if hdr, kv, err = e.firstPut(ctx, r.Name, resp.Header.Revision+1); err != nil {
			// Nobody leads: the first key put under the name will.
			return toStatus(err)
		}
		if err := stream.Send(&v3electionpb.LeaderResponse{Header: hdr, Kv: kv}); err != nil {
			return err
		}
		if err := e.follow(ctx, kv, stream); err != nil {
			return err
		}
		// The leader key is gone: look for the next leader.
	}
}

// firstPut waits for the first key put under the election's name from
// revision rev on.
func (e electionServer) firstPut(ctx context.Context, name []byte, rev int64) (*pb.ResponseHeader, *mvccpb.KeyValue, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for wr := range e.s.cli.Watch(wctx, prefix(name), clientv3.WithPrefix(), clientv3.WithRev(rev)) {
		if err := wr.Err(); err != nil {
			return nil, nil, err
		}
		for _, ev := range wr.Events {
			if ev.Type == mvccpb.PUT {
				return wr.Header, ev.Kv, nil
			}
		}
	}
	return nil, nil, ctx.Err()
}

// follow sends every new value of the leader key kv until it is deleted.
func (e electionServer) follow(ctx context.Context, kv *mvccpb.KeyValue, stream v3electionpb.Election_ObserveServer) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for wr := range e.s.cli.Watch(wctx, string(kv.Key), clientv3.WithRev(kv.ModRevision+1)) {
		if err := wr.Err(); err != nil {
			return toStatus(err)
		}
		for _, ev := range wr.Events {
			if ev.Type == mvccpb.DELETE {
				return nil
			}
			if err := stream.Send(&v3electionpb.LeaderResponse{Header: wr.Header, Kv: ev.Kv}); err != nil {
				return err
			}
		}
	}
	return toStatus(ctx.Err())
}
