package grpcapi

import (
	"bytes"
	"context"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/metcd/metcd/lease"
	"github.com/metcd/metcd/mvcc"
	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/memory"
	"github.com/metcd/metcd/storage/overlay"
	"github.com/metcd/metcd/watch"
)

// testBackend is a one-member Backend without raft: metcd's mvcc store,
// lessor and watch hub over a memory engine, each write committed at once
// (the apply loop's steps, in miniature). Errors can be injected per
// method to check their conversion.
type testBackend struct {
	mu        sync.Mutex // serializes writes, like the apply goroutine
	eng       *memory.Engine
	kv        *mvcc.Store
	ob        *overlay.Batch
	les       *lease.Lessor
	hub       *watch.Hub
	nextLease int64 // guarded by mu
	// notified is the last revision the hub was told of; while holdHub is
	// set, writes commit without telling it (as the apply loop's commit
	// precedes its Notify), until releaseHub. Both guarded by mu.
	notified int64
	holdHub  bool

	leader  atomic.Bool
	learner atomic.Bool
	backup  atomic.Pointer[[]byte]
	failMu  sync.Mutex
	fail    map[string]error // method → error to return
}

const (
	testClusterID = 0xc1
	testMemberID  = 0x3e
	testTerm      = 7
)

func newTestBackend(t testing.TB) *testBackend {
	t.Helper()
	eng := memory.New()
	les, err := lease.New(eng, lease.Options{})
	if err != nil {
		t.Fatal(err)
	}
	les.Promote(0)
	kv, err := mvcc.Open(eng, mvcc.Options{LeaseExists: les.Exists, Leases: les})
	if err != nil {
		t.Fatal(err)
	}
	hist := mvcc.WatchHistory{Store: kv, Read: func(fn func(storage.Reader) error) error { return fn(eng) }}
	b := &testBackend{
		eng: eng, kv: kv, ob: overlay.New(eng), les: les,
		hub:       watch.NewHub(hist, kv.Rev(), watch.Options{SyncInterval: 10 * time.Millisecond}),
		nextLease: 1000,
		notified:  kv.Rev(),
		fail:      make(map[string]error),
	}
	b.leader.Store(true)
	t.Cleanup(b.hub.Close)
	return b
}

func (b *testBackend) failWith(method string, err error) {
	b.failMu.Lock()
	defer b.failMu.Unlock()
	b.fail[method] = err
}

func (b *testBackend) injected(method string) error {
	b.failMu.Lock()
	defer b.failMu.Unlock()
	return b.fail[method]
}

// write runs fn in the batch, commits it and notifies the hub of every
// new revision, as the apply loop does after its commit.
func (b *testBackend) write(fn func(ob *overlay.Batch) error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := fn(b.ob); err != nil {
		b.ob.Reset(b.eng)
		if rerr := b.kv.Reload(b.eng); rerr != nil {
			panic(rerr)
		}
		return err
	}
	eb := b.eng.NewBatch()
	b.ob.ApplyTo(eb)
	err := eb.Commit(false)
	eb.Close()
	if err != nil {
		panic(err)
	}
	b.ob.Reset(b.eng)
	if !b.holdHub {
		b.notifyHub()
	}
	return nil
}

// notifyHub tells the hub of every committed revision it has not heard
// of. b.mu held.
func (b *testBackend) notifyHub() {
	for rev := b.notified + 1; rev <= b.kv.Rev(); rev++ {
		evs, err := b.kv.RevisionEvents(b.eng, rev)
		if err != nil {
			panic(err)
		}
		b.hub.Notify(rev, evs)
	}
	b.notified = b.kv.Rev()
}

// holdHubNotify makes writes commit without telling the hub until the
// function it returns is called.
func (b *testBackend) holdHubNotify() (release func()) {
	b.mu.Lock()
	b.holdHub = true
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.holdHub = false
		b.notifyHub()
	}
}

func (b *testBackend) fill(h *pb.ResponseHeader) *pb.ResponseHeader {
	if h == nil {
		h = &pb.ResponseHeader{Revision: b.kv.Rev()}
	}
	h.ClusterId, h.MemberId, h.RaftTerm = testClusterID, testMemberID, testTerm
	return h
}

func (b *testBackend) Range(_ context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := b.injected("Range"); err != nil {
		return nil, err
	}
	resp, err := b.kv.Range(b.eng, r)
	if err != nil {
		return nil, err
	}
	b.fill(resp.Header)
	return resp, nil
}

func (b *testBackend) Put(_ context.Context, r *pb.PutRequest) (resp *pb.PutResponse, err error) {
	if err := b.injected("Put"); err != nil {
		return nil, err
	}
	err = b.write(func(ob *overlay.Batch) error {
		w := b.kv.Write(ob)
		defer w.End()
		resp, err = w.Put(r)
		return err
	})
	if err != nil {
		return nil, err
	}
	b.fill(resp.Header)
	return resp, nil
}

func (b *testBackend) DeleteRange(_ context.Context, r *pb.DeleteRangeRequest) (resp *pb.DeleteRangeResponse, err error) {
	err = b.write(func(ob *overlay.Batch) error {
		w := b.kv.Write(ob)
		defer w.End()
		resp, err = w.DeleteRange(r)
		return err
	})
	if err != nil {
		return nil, err
	}
	b.fill(resp.Header)
	return resp, nil
}

func (b *testBackend) Txn(_ context.Context, r *pb.TxnRequest) (resp *pb.TxnResponse, err error) {
	err = b.write(func(ob *overlay.Batch) error {
		resp, err = b.kv.Txn(ob, r)
		return err
	})
	if err != nil {
		return nil, err
	}
	b.fill(resp.Header)
	return resp, nil
}

func (b *testBackend) Compact(_ context.Context, r *pb.CompactionRequest) (resp *pb.CompactionResponse, err error) {
	err = b.write(func(ob *overlay.Batch) error {
		resp, err = b.kv.Compact(ob, r.GetRevision())
		return err
	})
	if err != nil {
		return nil, err
	}
	b.fill(resp.Header)
	return resp, nil
}

func (b *testBackend) LeaseGrant(_ context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	id := r.GetID()
	if id == 0 {
		b.mu.Lock()
		b.nextLease++
		id = b.nextLease
		b.mu.Unlock()
	}
	var l *lease.Lease
	err := b.write(func(ob *overlay.Batch) (err error) {
		l, err = b.les.Grant(ob, id, r.GetTTL())
		return err
	})
	if err != nil {
		return nil, err
	}
	return &pb.LeaseGrantResponse{Header: b.fill(nil), ID: l.ID, TTL: l.TTL}, nil
}

func (b *testBackend) LeaseRevoke(_ context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	err := b.write(func(ob *overlay.Batch) error {
		keys, err := b.les.Revoke(ob, r.GetID())
		if err != nil {
			return err
		}
		_, err = b.kv.DeleteKeys(ob, keys)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &pb.LeaseRevokeResponse{Header: b.fill(nil)}, nil
}

func (b *testBackend) LeaseRenew(_ context.Context, id int64) (int64, error) {
	if err := b.injected("LeaseRenew"); err != nil {
		return 0, err
	}
	return b.les.Renew(id)
}

func (b *testBackend) LeaseTimeToLive(_ context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	granted, remaining, keys, err := b.les.TimeToLive(r.GetID(), r.GetKeys())
	if err != nil {
		return nil, err
	}
	return &pb.LeaseTimeToLiveResponse{Header: b.fill(nil), ID: r.GetID(), TTL: remaining, GrantedTTL: granted, Keys: keys}, nil
}

func (b *testBackend) LeaseLeases(context.Context, *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	resp := &pb.LeaseLeasesResponse{Header: b.fill(nil)}
	for _, id := range b.les.Leases() {
		resp.Leases = append(resp.Leases, &pb.LeaseStatus{ID: id})
	}
	return resp, nil
}

func (b *testBackend) WatchStream() *watch.Stream { return b.hub.NewStream() }

func (b *testBackend) MemberList(context.Context, *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	if err := b.injected("MemberList"); err != nil {
		return nil, err
	}
	return &pb.MemberListResponse{Header: b.fill(nil), Members: []*pb.Member{
		{ID: testMemberID, Name: "m1", PeerURLs: []string{"http://127.0.0.1:12380"}},
	}}, nil
}

func (b *testBackend) MemberAdd(context.Context, *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	return nil, b.injected("MemberAdd")
}

func (b *testBackend) MemberRemove(context.Context, *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	return nil, b.injected("MemberRemove")
}

func (b *testBackend) MemberUpdate(context.Context, *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	return nil, b.injected("MemberUpdate")
}

func (b *testBackend) MemberPromote(context.Context, *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	return nil, b.injected("MemberPromote")
}

func (b *testBackend) Alarm(context.Context, *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	return &pb.AlarmResponse{Header: b.fill(nil)}, nil
}

func (b *testBackend) Status(context.Context, *pb.StatusRequest) (*pb.StatusResponse, error) {
	return &pb.StatusResponse{Header: b.fill(nil), Version: "3.7.3", Leader: testMemberID, RaftTerm: testTerm}, nil
}

func (b *testBackend) Defragment(context.Context, *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	return &pb.DefragmentResponse{Header: b.fill(nil)}, nil
}

func (b *testBackend) Hash(context.Context, *pb.HashRequest) (*pb.HashResponse, error) {
	return &pb.HashResponse{Header: b.fill(nil), Hash: 42}, nil
}

func (b *testBackend) HashKV(_ context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	h, hashRev, compactRev, err := b.kv.HashKV(b.eng, r.GetRevision())
	if err != nil {
		return nil, err
	}
	return &pb.HashKVResponse{Header: b.fill(nil), Hash: h, HashRevision: hashRev, CompactRevision: compactRev}, nil
}

func (b *testBackend) MoveLeader(context.Context, *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	return nil, b.injected("MoveLeader")
}

func (b *testBackend) Backup(context.Context) (io.ReadCloser, int64, error) {
	if err := b.injected("Backup"); err != nil {
		return nil, 0, err
	}
	data := *b.backup.Load()
	return io.NopCloser(bytes.NewReader(data)), int64(len(data)), nil
}

func (b *testBackend) Header() *pb.ResponseHeader { return b.fill(nil) }

func (b *testBackend) HasLeader() bool { return b.leader.Load() }

func (b *testBackend) IsLearner() bool { return b.learner.Load() }

var _ Backend = (*testBackend)(nil)
