package mvcc

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/metcd/metcd/lease"
	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/engines"
	"github.com/metcd/metcd/storage/overlay"
)

// The differential test runs one seeded random sequence of KV requests
// against an embedded etcd and against a Store on every engine, and
// requires the same responses (header revision included) and the same
// errors (gRPC code and message).

// diffLeases are granted in etcd and in the stores' lessors; diffNoLease
// is granted in neither.
var diffLeases = []int64{0x1000, 0x2000}

const diffNoLease = 0x3000

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startEtcd starts a single-member etcd on loopback and returns a client.
func startEtcd(t testing.TB) *clientv3.Client {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "diff"
	cfg.Dir = t.TempDir()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.UnsafeNoFsync = true
	curl, _ := url.Parse("http://" + freePort(t))
	purl, _ := url.Parse("http://" + freePort(t))
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
// one or several write requests before it is committed.
type diffStore struct {
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
}

func (d *diffStore) commit(t testing.TB) {
	t.Helper()
	if err := commitBatch(d.eng, d.ob); err != nil {
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

// gen makes random requests over a small key set, tracking etcd's
// revisions to aim past reads and compactions.
type gen struct {
	rnd             *rand.Rand
	rev, compactRev int64
	keys            []string
	dupFree         bool
}

func newGen(seed uint64) *gen {
	return &gen{
		rnd:        rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		rev:        1,
		compactRev: -1,
		keys:       []string{"a", "a/1", "a/2", "a/3", "b", "b/1", "b/2", "c", "d", "e\x00", "e\x00\x01", "e\xff", "f"},
	}
}

func (g *gen) chance(p float64) bool { return g.rnd.Float64() < p }

func (g *gen) key() []byte {
	switch {
	case g.chance(0.005):
		return nil // refused: empty key
	case g.chance(0.25):
		// A wider key set, so that ranges sort more than 12 pairs (below
		// that Go's sort.Sort is an insertion sort, stable by accident).
		return fmt.Appendf(nil, "w/%02d", g.rnd.IntN(30))
	}
	return []byte(g.keys[g.rnd.IntN(len(g.keys))])
}

func (g *gen) value() []byte {
	n := g.rnd.IntN(4)
	if n == 0 {
		return nil
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = "xyz"[g.rnd.IntN(3)]
	}
	return b
}

// interval returns a key and range end: one key, a range (sometimes
// backwards), a prefix, from a key, or everything.
func (g *gen) interval() ([]byte, []byte) {
	switch x := g.rnd.IntN(10); {
	case x < 4:
		return g.key(), nil
	case x < 6:
		return g.key(), g.key()
	case x < 8:
		p := []string{"a/", "b/", "e\x00", "e", "w/", "w/1"}[g.rnd.IntN(6)]
		end := []byte(p)
		end[len(end)-1]++
		return []byte(p), end
	case x < 9:
		return g.key(), []byte{0}
	default:
		return []byte{0}, []byte{0}
	}
}

// revision is 0 mostly, else around the live revisions, sometimes
// compacted, future or negative.
func (g *gen) revision() int64 {
	if g.chance(0.6) {
		return 0
	}
	if g.chance(0.05) {
		return -1 - g.rnd.Int64N(2) // current for a range, compacted in a txn once compacted
	}
	lo := max(g.compactRev-2, -2)
	return lo + g.rnd.Int64N(g.rev+3-lo)
}

func (g *gen) rangeReq() *pb.RangeRequest {
	k, end := g.interval()
	r := &pb.RangeRequest{Key: k, RangeEnd: end, Revision: g.revision()}
	r.Limit = []int64{0, 0, 0, 1, 2, 3, -1}[g.rnd.IntN(7)]
	if g.chance(0.5) {
		r.SortOrder = pb.RangeRequest_SortOrder(g.rnd.IntN(3))
		r.SortTarget = pb.RangeRequest_SortTarget(g.rnd.IntN(5))
		if g.chance(0.02) {
			r.SortTarget = 9
		}
		if g.chance(0.02) {
			r.SortOrder = 4
		}
	}
	r.KeysOnly = g.chance(0.2)
	r.CountOnly = g.chance(0.1)
	filter := func() int64 {
		if g.chance(0.85) {
			return 0
		}
		return g.rnd.Int64N(g.rev + 2)
	}
	r.MinModRevision, r.MaxModRevision = filter(), filter()
	r.MinCreateRevision, r.MaxCreateRevision = filter(), filter()
	r.Serializable = g.chance(0.3)
	return r
}

func (g *gen) lease() int64 {
	switch x := g.rnd.IntN(20); {
	case x < 14:
		return 0
	case x < 19:
		return diffLeases[x%2]
	default:
		return diffNoLease
	}
}

func (g *gen) putReq() *pb.PutRequest {
	p := &pb.PutRequest{Key: g.key(), Value: g.value(), Lease: g.lease(), PrevKv: g.chance(0.3)}
	if g.chance(0.1) {
		p.IgnoreValue = true
		if g.chance(0.8) {
			p.Value = nil
		}
	}
	if g.chance(0.1) {
		p.IgnoreLease = true
		if g.chance(0.8) {
			p.Lease = 0
		}
	}
	return p
}

func (g *gen) deleteReq() *pb.DeleteRangeRequest {
	k, end := g.interval()
	return &pb.DeleteRangeRequest{Key: k, RangeEnd: end, PrevKv: g.chance(0.4)}
}

func (g *gen) compare() *pb.Compare {
	c := &pb.Compare{
		Key:    g.key(),
		Target: pb.Compare_CompareTarget(g.rnd.IntN(5)),
		Result: pb.Compare_CompareResult(g.rnd.IntN(4)),
	}
	if g.chance(0.2) {
		_, c.RangeEnd = g.interval()
	}
	target := c.Target
	if g.chance(0.1) {
		target = pb.Compare_CompareTarget(g.rnd.IntN(5)) // maybe mismatched
	}
	n := g.rnd.Int64N(g.rev + 2)
	switch {
	case g.chance(0.05):
		// no target union
	case target == pb.Compare_VALUE:
		c.TargetUnion = &pb.Compare_Value{Value: g.value()}
	case target == pb.Compare_VERSION:
		c.TargetUnion = &pb.Compare_Version{Version: n % 4}
	case target == pb.Compare_CREATE:
		c.TargetUnion = &pb.Compare_CreateRevision{CreateRevision: n}
	case target == pb.Compare_MOD:
		c.TargetUnion = &pb.Compare_ModRevision{ModRevision: n}
	case target == pb.Compare_LEASE:
		c.TargetUnion = &pb.Compare_Lease{Lease: g.lease()}
	}
	return c
}

func (g *gen) txnReq(depth int) *pb.TxnRequest {
	t := &pb.TxnRequest{}
	for range g.rnd.IntN(3) {
		t.Compare = append(t.Compare, g.compare())
	}
	ops := func() []*pb.RequestOp {
		var ops []*pb.RequestOp
		for range g.rnd.IntN(4) {
			switch x := g.rnd.IntN(10); {
			case x < 3:
				ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: g.rangeReq()}})
			case x < 6:
				ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: g.putReq()}})
			case x < 8:
				ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: g.deleteReq()}})
			case x < 9 && depth < 2:
				ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: g.txnReq(depth + 1)}})
			default:
				if g.chance(0.05) {
					ops = append(ops, &pb.RequestOp{}) // refused: empty op
				}
			}
		}
		return ops
	}
	t.Success, t.Failure = ops(), ops()
	if depth > 0 && g.chance(0.3) {
		// The same key put in both branches: allowed.
		p := &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: g.key(), Value: g.value()}}}
		t.Success = append(t.Success, p)
		t.Failure = append(t.Failure, proto.Clone(p).(*pb.RequestOp))
	}
	if depth == 0 && g.dupFree {
		dedupTxn(t)
	}
	return t
}

// dedupTxn drops the puts and deletes that would make etcd refuse the
// txn as a duplicate, most of the time: puts of a key already written and
// deletes touching a written key, over the whole tree.
func dedupTxn(t *pb.TxnRequest) {
	seen := map[string]bool{}
	var walk func(ops []*pb.RequestOp) []*pb.RequestOp
	walk = func(ops []*pb.RequestOp) []*pb.RequestOp {
		out := ops[:0]
		for _, op := range ops {
			switch v := op.Request.(type) {
			case *pb.RequestOp_RequestPut:
				if seen[string(v.RequestPut.Key)] {
					continue
				}
				seen[string(v.RequestPut.Key)] = true
			case *pb.RequestOp_RequestDeleteRange:
				if len(v.RequestDeleteRange.RangeEnd) != 0 {
					continue
				}
				if seen[string(v.RequestDeleteRange.Key)] {
					continue
				}
				seen[string(v.RequestDeleteRange.Key)] = true
			case *pb.RequestOp_RequestTxn:
				v.RequestTxn.Success = walk(v.RequestTxn.Success)
				v.RequestTxn.Failure = walk(v.RequestTxn.Failure)
			}
			out = append(out, op)
		}
		return out
	}
	t.Success = walk(t.Success)
	t.Failure = walk(t.Failure)
}

// crashesEtcd reports whether etcd would accept req and then panic
// applying it: a put with ignore_value or ignore_lease of a key the txn
// deleted before.
func crashesEtcd(t testing.TB, d *diffStore, req *pb.TxnRequest) bool {
	t.Helper()
	if ValidateTxn(req, 0) != nil {
		return false
	}
	w := d.s.Write(d.ob)
	var path []bool
	if err := w.comparePath(req, &path); err != nil {
		t.Fatal(err)
	}
	if _, err := w.checkTxn(req, path); err != nil {
		return false
	}
	return ignoredPutOfDeletedKey(req, path)
}

// stripHeader returns the header revision and a copy without the header.
func stripHeader(m proto.Message) (int64, proto.Message) {
	c := proto.Clone(m)
	r := c.ProtoReflect()
	fd := r.Descriptor().Fields().ByName("header")
	rev := r.Get(fd).Message().Interface().(*pb.ResponseHeader).GetRevision()
	r.Clear(fd)
	return rev, c
}

func isNilMsg(m proto.Message) bool {
	return m == nil || !m.ProtoReflect().IsValid()
}

func diffCheck(t testing.TB, what string, want proto.Message, wantErr error, got proto.Message, gotErr error) {
	t.Helper()
	if wantErr != nil || gotErr != nil {
		ws, gs := status.Convert(wantErr), status.Convert(ToGRPCError(gotErr))
		if wantErr == nil || gotErr == nil || ws.Code() != gs.Code() || ws.Message() != gs.Message() {
			t.Fatalf("%s:\n etcd error %v (resp %s)\n ours error %v (resp %s)", what, wantErr, text(want), gotErr, text(got))
		}
		return
	}
	if isNilMsg(got) {
		t.Fatalf("%s: nil response, want %s", what, text(want))
	}
	wrev, w := stripHeader(want)
	grev, g := stripHeader(got)
	if wrev != grev || !proto.Equal(w, g) {
		t.Fatalf("%s:\n etcd (rev %d) %s\n ours (rev %d) %s", what, wrev, text(w), grev, text(g))
	}
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
	kv := pb.NewKVClient(cli.ActiveConnection())
	lc := pb.NewLeaseClient(cli.ActiveConnection())
	var stores []*diffStore
	for _, name := range engines.Names() {
		open, err := engines.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		d := &diffStore{name: name, open: open, dir: t.TempDir()}
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

	g := newGen(diffSeed(t))
	stats := map[string]int{}
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
				d.afterWrite(t, g.rnd)
			}
			g.rev = resp.Header.Revision
			stats["revoke"]++
			grant(id)
		}
		if i%800 == 799 {
			for _, d := range stores {
				d.restart(t)
			}
		}
		g.dupFree = g.chance(0.7)
		var (
			desc    string
			want    proto.Message
			wantErr error
			mine    func(d *diffStore, rnd *rand.Rand) (proto.Message, error)
			write   bool
		)
		switch x := g.rnd.IntN(100); {
		case x < 30:
			req := g.putReq()
			desc = "put " + text(req)
			want, wantErr = kv.Put(ctx, req)
			write = true
			mine = func(d *diffStore, _ *rand.Rand) (proto.Message, error) {
				w := d.s.Write(d.ob)
				defer w.End()
				return w.Put(req)
			}
		case x < 42:
			req := g.deleteReq()
			desc = "delete " + text(req)
			want, wantErr = kv.DeleteRange(ctx, req)
			write = true
			mine = func(d *diffStore, _ *rand.Rand) (proto.Message, error) {
				w := d.s.Write(d.ob)
				defer w.End()
				return w.DeleteRange(req)
			}
		case x < 70:
			req := g.rangeReq()
			desc = "range " + text(req)
			want, wantErr = kv.Range(ctx, req)
			mine = func(d *diffStore, rnd *rand.Rand) (proto.Message, error) {
				r, done := d.reader(t, rnd)
				defer done()
				return d.s.Range(r, req)
			}
		case x < 98:
			req := g.txnReq(0)
			desc = "txn " + text(req)
			if crashesEtcd(t, stores[0], req) {
				// etcd v3.7.3 would panic; we refuse it (see
				// ignoredPutOfDeletedKey).
				want, wantErr = nil, rpctypes.ErrGRPCKeyNotFound
				stats["txn that crashes etcd"]++
			} else {
				want, wantErr = kv.Txn(ctx, req)
			}
			write = true
			mine = func(d *diffStore, _ *rand.Rand) (proto.Message, error) {
				return d.s.Txn(d.ob, req)
			}
		default:
			// From just below the compacted revision to just above the
			// current one.
			base := max(g.compactRev, 0)
			rev := base - 1 + g.rnd.Int64N(g.rev-base+3)
			req := &pb.CompactionRequest{Revision: rev}
			desc = "compact " + text(req)
			want, wantErr = kv.Compact(ctx, req)
			mine = func(d *diffStore, rnd *rand.Rand) (proto.Message, error) {
				resp, err := d.s.Compact(d.ob, rev)
				d.commit(t)
				if err == nil && rnd.IntN(2) == 0 {
					// Physical compaction in the background while the
					// next requests run.
					d.waitPhysical(t)
					ch := make(chan error, 1)
					d.physical = ch
					go func() { ch <- d.s.PhysicalCompact(d.eng, rev, 3) }()
				}
				return resp, err
			}
			if wantErr == nil {
				g.compactRev = rev
			}
		}
		if wantErr != nil {
			if s, ok := status.FromError(wantErr); ok {
				stats[strings.Fields(desc)[0]+" error: "+s.Message()]++
			}
		} else {
			stats[strings.Fields(desc)[0]]++
		}
		if wantErr == nil {
			rev, _ := stripHeader(want)
			g.rev = max(g.rev, rev)
		}
		for si, d := range stores {
			rnd := rand.New(rand.NewPCG(uint64(i), uint64(si)))
			got, gotErr := mine(d, rnd)
			diffCheck(t, fmt.Sprintf("op %d on %s: %s", i, d.name, desc), want, wantErr, got, gotErr)
			if write {
				d.afterWrite(t, rnd)
			}
		}
	}
	for _, d := range stores {
		d.commit(t)
		d.waitPhysical(t)
		if d.s.Rev() != g.rev {
			t.Fatalf("%s: revision %d, etcd %d", d.name, d.s.Rev(), g.rev)
		}
	}
	t.Logf("revision %d, compacted %d; outcomes: %v", g.rev, g.compactRev, stats)

	// Watch catch-up: History against an etcd watch from a few revisions,
	// with and without prev_kv.
	froms := []int64{g.compactRev - 1, g.compactRev, g.compactRev + 1, (g.compactRev + g.rev) / 2, g.rev}
	if g.compactRev < 1 {
		froms = append(froms, 1)
	}
	for _, from := range froms {
		if from < 1 {
			continue
		}
		for _, withPrev := range []bool{false, true} {
			what := fmt.Sprintf("history from %d (prev_kv %v)", from, withPrev)
			etcdEvs, compacted := etcdWatch(t, ctx, cli, from, g.rev, withPrev)
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
				if from == g.compactRev {
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
			for _, ev := range resp.Events {
				evs = append(evs, ev)
			}
			if len(evs) > 0 && evs[len(evs)-1].Kv.ModRevision >= to {
				return evs, false
			}
		case <-ctx.Done():
			t.Fatalf("watch from %d: no events up to %d", from, to)
		}
	}
}

// diffSeed is the seed from MVCC_DIFF_SEED, or else the clock; the test
// logs it so that a failure can be replayed.
func diffSeed(t testing.TB) uint64 {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("MVCC_DIFF_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("MVCC_DIFF_SEED: %v", err)
		}
		seed = n
	}
	t.Logf("seed %d (set MVCC_DIFF_SEED to replay)", seed)
	return seed
}
