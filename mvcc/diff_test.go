package mvcc

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/metcd/metcd/internal/difftest"
	"github.com/metcd/metcd/internal/freeport"
	"github.com/metcd/metcd/lease"
	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/engines"
	"github.com/metcd/metcd/storage/overlay"
)

// The differential test runs one seeded random sequence of KV requests
// against an embedded etcd and against a Store on every engine, and
// requires the same responses (header revision included) and the same
// errors (gRPC code and message).

// diffLeases are granted in etcd and in the stores' lessors;
// difftest.DefaultNoLease is granted in neither.
var diffLeases = difftest.DefaultLeases

// startEtcd starts a single-member etcd on loopback and returns a client.
func startEtcd(t testing.TB) *clientv3.Client {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "diff"
	cfg.Dir = t.TempDir()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.UnsafeNoFsync = true
	urls, err := freeport.URLs(2)
	if err != nil {
		t.Fatal(err)
	}
	curl, _ := url.Parse(urls[0])
	purl, _ := url.Parse(urls[1])
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*curl}, []url.URL{*curl}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*purl}, []url.URL{*purl}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("etcd did not start")
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{curl.Host},
		DialTimeout: 10 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// diffStore is one engine's Store, with an overlay batch that collects
// one or several write requests before it is committed. It is the
// difftest.Target of the Store.
type diffStore struct {
	t       testing.TB
	name    string
	open    func(dir string) (storage.Engine, error)
	dir     string
	eng     storage.Engine
	l       *lease.Lessor
	s       *Store
	ob      *overlay.Batch
	pending int
	// physical runs a background PhysicalCompact; nil when idle.
	physical chan error
	// rnd makes Do's random choices (batching, readers, physical
	// compactions), set before each op.
	rnd *rand.Rand
}

// Do runs op on the Store: writes go into the batch, which is committed
// now or later (afterWrite); reads go to the batch, the engine or a
// snapshot; a compaction is committed and sometimes followed by a
// physical compaction in the background. The error is the one etcd's
// gRPC layer would send.
func (d *diffStore) Do(_ context.Context, op difftest.Op) (proto.Message, error) {
	resp, err := d.do(op)
	if err != nil {
		return nil, ToGRPCError(err)
	}
	return resp, nil
}

func (d *diffStore) do(op difftest.Op) (proto.Message, error) {
	t, rnd := d.t, d.rnd
	t.Helper()
	switch req := op.Req.(type) {
	case *pb.PutRequest:
		w := d.s.Write(d.ob)
		resp, err := w.Put(req)
		w.End()
		d.afterWrite(t, rnd)
		return resp, err
	case *pb.DeleteRangeRequest:
		w := d.s.Write(d.ob)
		resp, err := w.DeleteRange(req)
		w.End()
		d.afterWrite(t, rnd)
		return resp, err
	case *pb.RangeRequest:
		if rnd.IntN(4) == 0 {
			// The live engine read the way the server reads it.
			d.commit(t)
			return d.s.RangeCommitted(d.eng, req)
		}
		r, done := d.reader(t, rnd)
		defer done()
		return d.s.Range(r, req)
	case *pb.TxnRequest:
		resp, err := d.s.Txn(d.ob, req)
		d.afterWrite(t, rnd)
		return resp, err
	case *pb.CompactionRequest:
		rev := req.Revision
		resp, err := d.s.Compact(d.ob, rev)
		d.commit(t)
		if err == nil && rnd.IntN(2) == 0 {
			// Physical compaction in the background while the next
			// requests run.
			d.waitPhysical(t)
			ch := make(chan error, 1)
			d.physical = ch
			go func() { ch <- d.s.PhysicalCompact(d.eng, rev, 3, nil) }()
		}
		return resp, err
	}
	t.Fatalf("unknown request %T", op.Req)
	return nil, nil
}

func (d *diffStore) commit(t testing.TB) {
	t.Helper()
	if err := d.s.Commit(func() error { return commitBatch(d.eng, d.ob) }); err != nil {
		t.Fatal(err)
	}
	d.pending = 0
}

// afterWrite commits now or leaves the write pending with the next ones.
func (d *diffStore) afterWrite(t testing.TB, rnd *rand.Rand) {
	d.pending++
	if d.pending >= 4 || rnd.IntN(2) == 0 {
		d.commit(t)
	}
}

// reader picks what a read goes to: the batch (sees pending writes), or
// the engine or a snapshot after committing.
func (d *diffStore) reader(t testing.TB, rnd *rand.Rand) (storage.Reader, func()) {
	switch rnd.IntN(3) {
	case 0:
		return d.ob, func() {}
	case 1:
		d.commit(t)
		return d.eng, func() {}
	default:
		d.commit(t)
		snap, err := d.eng.NewSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		return snap, func() { snap.Close() }
	}
}

// restart reopens the Store, and the engine too if it is durable: no
// state may live outside the engine.
func (d *diffStore) restart(t testing.TB) {
	t.Helper()
	d.commit(t)
	d.waitPhysical(t)
	if d.eng.Durable() {
		if err := d.eng.Close(); err != nil {
			t.Fatal(err)
		}
		eng, err := d.open(d.dir)
		if err != nil {
			t.Fatal(err)
		}
		d.eng = eng
	}
	s := d.s
	d.openStore(t)
	if s.Rev() != d.s.Rev() || s.CompactRev() != d.s.CompactRev() || s.PhysicalRev() != d.s.PhysicalRev() {
		t.Fatalf("%s: reopened at rev %d compact %d physical %d, was %d %d %d", d.name,
			s.Rev(), s.CompactRev(), s.PhysicalRev(), d.s.Rev(), d.s.CompactRev(), d.s.PhysicalRev())
	}
	d.ob.Reset(d.eng)
}

// openStore opens the lessor and the Store over d.eng.
func (d *diffStore) openStore(t testing.TB) {
	t.Helper()
	var err error
	if d.l, err = lease.New(d.eng, lease.Options{}); err != nil {
		t.Fatal(err)
	}
	if d.s, err = Open(d.eng, Options{LeaseExists: d.l.Exists, Leases: d.l}); err != nil {
		t.Fatal(err)
	}
}

func (d *diffStore) waitPhysical(t testing.TB) {
	t.Helper()
	if d.physical != nil {
		if err := <-d.physical; err != nil {
			t.Fatalf("%s: physical compaction: %v", d.name, err)
		}
		d.physical = nil
	}
}

// crashesEtcd reports whether etcd would accept req and then panic
// applying it: a put with ignore_value or ignore_lease of a key the txn
// deleted before.
func crashesEtcd(t testing.TB, d *diffStore, req *pb.TxnRequest) bool {
	t.Helper()
	if validateTxn(req, 0, maxAppliedKeyBytes) != nil {
		return false
	}
	w := d.s.Write(d.ob)
	var path []bool
	if err := w.comparePath(req, &path); err != nil {
		t.Fatal(err)
	}
	crashes := ignoredPutOfDeletedKey(req, path)
	// difftest's copy of the rule, which tests against servers use, must
	// agree.
	if difftest.PanicsEtcd(req, path) != crashes || crashes && !difftest.MayPanicEtcd(req) {
		t.Fatalf("difftest.PanicsEtcd %v, MayPanicEtcd %v, ignoredPutOfDeletedKey %v on path %v: %s",
			difftest.PanicsEtcd(req, path), difftest.MayPanicEtcd(req), crashes, path, text(req))
	}
	if _, err := w.checkTxn(req, path); err != nil {
		return false
	}
	return crashes
}

func TestDifferentialEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd")
	}
	ops := 5000
	if raceEnabled {
		ops = 1500
	}
	cli := startEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	lc := pb.NewLeaseClient(cli.ActiveConnection())
	var stores []*diffStore
	for _, name := range engines.Names() {
		open, err := engines.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		d := &diffStore{t: t, name: name, open: open, dir: t.TempDir()}
		if d.eng, err = open(d.dir); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			d.waitPhysical(t)
			d.eng.Close()
		})
		d.openStore(t)
		d.ob = overlay.New(d.eng)
		stores = append(stores, d)
	}
	// Leases live in etcd and in each store's lessor.
	grant := func(id int64) {
		if _, err := lc.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: id, TTL: 3600}); err != nil {
			t.Fatal(err)
		}
		for _, d := range stores {
			if _, err := d.l.Grant(d.ob, id, 3600); err != nil {
				t.Fatal(err)
			}
			d.commit(t)
		}
	}
	for _, id := range diffLeases {
		grant(id)
	}

	g := difftest.NewGen(difftest.Seed(t, "MVCC_DIFF_SEED"), difftest.Options{Leases: diffLeases})
	etcd := difftest.NewClient(cli)
	stats := difftest.Stats{}
	for i := 0; i < ops; i++ {
		if i%1000 == 999 {
			// Revoke a lease (deleting its keys in one revision), then
			// grant it again.
			id := diffLeases[i/1000%2]
			resp, err := lc.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: id})
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range stores {
				keys, err := d.l.Revoke(d.ob, id)
				if err != nil {
					t.Fatal(err)
				}
				if d == stores[0] {
					stats["revoked keys"] += len(keys)
				}
				rev, err := d.s.DeleteKeys(d.ob, keys)
				if err != nil || rev != resp.Header.Revision {
					t.Fatalf("op %d on %s: revoke: revision %d %v, etcd %d", i, d.name, rev, err, resp.Header.Revision)
				}
				d.afterWrite(t, g.Rand())
			}
			g.ObserveRevision(resp.Header.Revision)
			stats["revoke"]++
			grant(id)
		}
		if i%800 == 799 {
			for _, d := range stores {
				d.restart(t)
			}
		}
		op := g.Next()
		var want difftest.Result
		if req, ok := op.Req.(*pb.TxnRequest); ok && crashesEtcd(t, stores[0], req) {
			// etcd v3.7.3 would panic; we refuse it (see
			// ignoredPutOfDeletedKey).
			want.Err = rpctypes.ErrGRPCKeyNotFound
			stats["txn that crashes etcd"]++
		} else {
			want.Resp, want.Err = etcd.Do(ctx, op)
		}
		want.Name = "etcd"
		stats.Add(op, want.Err)
		g.Observe(op, want.Resp, want.Err)
		for si, d := range stores {
			d.rnd = rand.New(rand.NewPCG(uint64(i), uint64(si)))
			got := difftest.Result{Name: "ours"}
			got.Resp, got.Err = d.Do(ctx, op)
			if err := difftest.Compare(want, got); err != nil {
				t.Fatalf("op %d on %s: %s: %v", i, d.name, op, err)
			}
		}
	}
	for _, d := range stores {
		d.commit(t)
		d.waitPhysical(t)
		if d.s.Rev() != g.Rev() {
			t.Fatalf("%s: revision %d, etcd %d", d.name, d.s.Rev(), g.Rev())
		}
	}
	t.Logf("revision %d, compacted %d; outcomes: %v", g.Rev(), g.CompactRev(), stats)

	// Watch catch-up: History against an etcd watch from a few revisions,
	// with and without prev_kv.
	rev, compactRev := g.Rev(), g.CompactRev()
	froms := []int64{compactRev - 1, compactRev, compactRev + 1, (compactRev + rev) / 2, rev}
	if compactRev < 1 {
		froms = append(froms, 1)
	}
	for _, from := range froms {
		// A watch from past the last revision waits for writes that will
		// not come (compactRev+1 is such a revision when the last op was a
		// compaction at the current revision).
		if from < 1 || from > rev {
			continue
		}
		for _, withPrev := range []bool{false, true} {
			what := fmt.Sprintf("history from %d (prev_kv %v)", from, withPrev)
			etcdEvs, compacted := etcdWatch(t, ctx, cli, from, rev, withPrev)
			for _, d := range stores {
				var got []*mvccpb.Event
				history := d.s.History
				if withPrev {
					history = d.s.HistoryWithPrevKV
				}
				err := history(d.eng, from, []byte{0}, []byte{0}, func(ev *mvccpb.Event) bool {
					got = append(got, ev)
					return true
				})
				if compacted {
					wantErr(t, d.name+": "+what, err, ErrCompacted)
					continue
				}
				if err != nil {
					t.Fatalf("%s: %s: %v", d.name, what, err)
				}
				want := etcdEvs
				if from == compactRev {
					// etcd's physical compaction drops the deletes (and
					// overwritten puts) of the compacted revision itself,
					// if it finished before the watch; we keep them all.
					got, want = withoutRev(got, from), withoutRev(want, from)
				}
				if len(got) != len(want) {
					t.Fatalf("%s: %s: %d events, etcd watch %d", d.name, what, len(got), len(want))
				}
				for i := range got {
					if !proto.Equal(got[i], want[i]) {
						t.Fatalf("%s: %s, event %d:\n ours %s\n etcd %s", d.name, what, i, text(got[i]), text(want[i]))
					}
				}
			}
		}
	}
}

func withoutRev(evs []*mvccpb.Event, rev int64) []*mvccpb.Event {
	var out []*mvccpb.Event
	for _, ev := range evs {
		if ev.Kv.ModRevision != rev {
			out = append(out, ev)
		}
	}
	return out
}

// etcdWatch collects the events etcd's watch sends from revision from up
// to revision to, or reports that from is compacted.
func etcdWatch(t testing.TB, ctx context.Context, cli *clientv3.Client, from, to int64, withPrev bool) ([]*mvccpb.Event, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithRange("\x00"), clientv3.WithRev(from)}
	if withPrev {
		opts = append(opts, clientv3.WithPrevKV())
	}
	wch := cli.Watch(clientv3.WithRequireLeader(ctx), "\x00", opts...)
	var evs []*mvccpb.Event
	for {
		select {
		case resp, ok := <-wch:
			if !ok {
				t.Fatalf("watch from %d closed: %v", from, ctx.Err())
			}
			if resp.CompactRevision != 0 {
				return nil, true
			}
			if err := resp.Err(); err != nil {
				t.Fatalf("watch from %d: %v", from, err)
			}
			evs = append(evs, resp.Events...)
			if len(evs) > 0 && evs[len(evs)-1].Kv.ModRevision >= to {
				return evs, false
			}
		case <-ctx.Done():
			t.Fatalf("watch from %d: no events up to %d", from, to)
		}
	}
}
