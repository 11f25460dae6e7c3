package e2e

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/metcd/metcd/internal/difftest"
)

// The v3 differential test runs one seeded random sequence of etcd v3 KV
// requests (internal/difftest: every request field, invalid requests,
// nested txns, compactions, leases) against a real etcd started in this
// process and against a three-member metcd cluster through its gRPC API,
// on every engine, and requires the same responses (header revision
// included; cluster_id, member_id and raft_term aside) and the same
// errors (gRPC code and message). The requests go to the members in turn,
// so that most of them are forwarded by a follower. Serializable requests
// (etcd's rule: difftest.Op.Serializable) are preceded by a linearizable
// read on the same member, since a follower may answer them from behind.
// Txns that etcd v3.7.3 would panic applying are sent to metcd only,
// which must refuse them (difftest.PanicsEtcd; package mvcc's documented
// difference). A fixed sequence of reads right after writes through
// another member follows, then full reads of the key space on every
// member.
//
// Environment:
//
//	METCD_E2E_DIFF_SEED  replay this seed (the test logs the one it used)
//	METCD_E2E_DIFF_OPS   requests per engine (default 400)

const (
	v3DiffSeedEnv = "METCD_E2E_DIFF_SEED"
	v3DiffOpsEnv  = "METCD_E2E_DIFF_OPS"
	// v3DiffRevokeEvery is how often (in requests) a lease is revoked,
	// deleting its keys in one revision, and granted again.
	v3DiffRevokeEvery = 150
	v3DiffLeaseTTL    = 3600
)

var v3DiffEngines = []string{"memory", "bolt", "leveldb", "pebble"}

func TestV3Differential(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd and a cluster per engine")
	}
	seed := difftest.Seed(t, v3DiffSeedEnv)
	ops := 400
	if v := os.Getenv(v3DiffOpsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			t.Fatalf("%s=%q: want a number of requests", v3DiffOpsEnv, v)
		}
		ops = n
	}
	for _, engine := range v3DiffEngines {
		t.Run(engine, func(t *testing.T) {
			runV3Diff(t, engine, seed, ops)
		})
	}
}

// v3Diff is one engine's run: the reference etcd and the members.
type v3Diff struct {
	t       *testing.T
	engine  string
	seed    uint64
	etcd    *difftest.Client
	members []*difftest.Client
}

// fail stops the run with everything needed to replay it.
func (d *v3Diff) fail(i, via int, what string, err error) {
	d.t.Helper()
	d.t.Fatalf("engine %s, seed %d (%s=%d to replay), op %d via member %d: %s: %v",
		d.engine, d.seed, v3DiffSeedEnv, d.seed, i, via+1, what, err)
}

// check compares etcd's answer and member via's.
func (d *v3Diff) check(i, via int, what string, want, got difftest.Result) {
	d.t.Helper()
	want.Name, got.Name = "etcd", fmt.Sprintf("metcd member %d", via+1)
	if err := difftest.Compare(want, got); err != nil {
		d.fail(i, via, what, err)
	}
}

func runV3Diff(t *testing.T, engine string, seed uint64, ops int) {
	start := time.Now()
	c := NewCluster(t, Options{Size: 3, Extra: []string{"--engine", engine}})
	d := &v3Diff{t: t, engine: engine, seed: seed, etcd: difftest.NewClient(v3DiffEtcd(t))}
	for _, m := range c.Members {
		mc := difftest.NewClient(v3DiffDial(t, m))
		// A follower may answer a serializable request before it applied
		// the last writes: make it catch up first.
		mc.Barrier = true
		d.members = append(d.members, mc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	do := func(tg difftest.Target, op difftest.Op) difftest.Result {
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		resp, err := tg.Do(octx, op)
		return difftest.Result{Resp: resp, Err: err}
	}
	probe := difftest.Op{Req: &pb.RangeRequest{Key: []byte("probe")}}
	for i, m := range d.members {
		c.Eventually(10*time.Second, fmt.Sprintf("member %d serves the etcd v3 gRPC API on its client port", i+1), func() error {
			return do(m, probe).Err
		})
	}

	// Leases are granted, and revoked, on both sides with the same IDs.
	grant := func(i, via int, id int64) {
		t.Helper()
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		var want, got difftest.Result
		want.Resp, want.Err = d.etcd.GrantLease(octx, id, v3DiffLeaseTTL)
		if want.Err != nil {
			t.Fatalf("etcd: granting lease %#x: %v", id, want.Err)
		}
		got.Resp, got.Err = d.members[via].GrantLease(octx, id, v3DiffLeaseTTL)
		d.check(i, via, fmt.Sprintf("lease grant %#x", id), want, got)
	}
	for k, id := range difftest.DefaultLeases {
		grant(-1, k%len(d.members), id)
	}

	g := difftest.NewGen(seed, difftest.Options{})
	stats := difftest.Stats{}
	for i := range ops {
		via := i % len(d.members)
		m := d.members[via]
		if i%v3DiffRevokeEvery == v3DiffRevokeEvery-1 {
			id := difftest.DefaultLeases[i/v3DiffRevokeEvery%len(difftest.DefaultLeases)]
			octx, cancel := context.WithTimeout(ctx, 10*time.Second)
			var want, got difftest.Result
			want.Resp, want.Err = d.etcd.RevokeLease(octx, id)
			got.Resp, got.Err = m.RevokeLease(octx, id)
			cancel()
			if want.Err != nil {
				t.Fatalf("etcd: revoking lease %#x: %v", id, want.Err)
			}
			d.check(i, via, fmt.Sprintf("lease revoke %#x", id), want, got)
			g.ObserveRevision(difftest.HeaderRevision(want.Resp))
			stats["revoke"]++
			grant(i, (via+1)%len(d.members), id)
		}

		op := g.Next()
		if req, ok := op.Req.(*pb.TxnRequest); ok {
			octx, cancel := context.WithTimeout(ctx, 10*time.Second)
			panics, err := d.etcd.PanicsEtcd(octx, req)
			cancel()
			if err != nil {
				t.Fatalf("etcd: evaluating the compares of op %d: %v", i, err)
			}
			if panics {
				// etcd v3.7.3 would panic applying it; metcd refuses it
				// before writing anything (mvcc's documented difference).
				// If it wrote, the next requests see another revision.
				got := do(m, op)
				if got.Err == nil {
					d.fail(i, via, op.String(), fmt.Errorf("metcd accepted a txn that etcd v3.7.3 panics applying (mvcc refuses it with ErrKeyNotFound): %s", difftest.Text(got.Resp)))
				}
				stats["txn that crashes etcd"]++
				stats.Add(op, got.Err)
				continue
			}
		}
		want := do(d.etcd, op)
		got := do(m, op)
		d.check(i, via, op.String(), want, got)
		stats.Add(op, want.Err)
		g.Observe(op, want.Resp, want.Err)
	}

	// Reads right after a write through another member, which the random
	// sequence makes too rarely to catch a member answering from behind:
	// txns that write nothing but that etcd sends through raft all the
	// same (a nested txn makes a txn neither read-only nor serializable
	// for etcd), and serializable ones (after the barrier).
	nested := func(t *pb.TxnRequest) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: t}}
	}
	srange := func(key string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte(key), Serializable: true}}}
	}
	for k := range 60 {
		i, key := ops+2*k, fmt.Sprintf("raw/%02d", k)
		reads := []*pb.TxnRequest{
			{Success: []*pb.RequestOp{nested(&pb.TxnRequest{})}},
			{Success: []*pb.RequestOp{srange(key), nested(&pb.TxnRequest{Success: []*pb.RequestOp{srange(key)}})}},
			{Failure: []*pb.RequestOp{srange(key)}, Compare: []*pb.Compare{{Key: []byte(key), Target: pb.Compare_VERSION, Result: pb.Compare_EQUAL}}},
		}
		w := difftest.Op{Req: &pb.PutRequest{Key: []byte(key), Value: []byte("v")}}
		r := difftest.Op{Req: reads[k%len(reads)]}
		for j, op := range []difftest.Op{w, r} {
			via := (k + j) % len(d.members)
			want, got := do(d.etcd, op), do(d.members[via], op)
			d.check(i+j, via, "read after write: "+op.String(), want, got)
			g.Observe(op, want.Resp, want.Err)
		}
		stats["read after write"]++
	}

	// Every member ends with etcd's key space, read linearizably and
	// serializably (after a barrier), at the current and at an earlier
	// revision.
	all := func(rev int64, serializable bool) difftest.Op {
		return difftest.Op{Req: &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev, Serializable: serializable}}
	}
	mid := max(g.CompactRev(), (g.CompactRev()+g.Rev())/2, 1)
	for _, rev := range []int64{0, mid} {
		for _, serializable := range []bool{false, true} {
			op := all(rev, serializable)
			want := do(d.etcd, op)
			if want.Err != nil {
				t.Fatalf("etcd: %s: %v", op, want.Err)
			}
			if r := difftest.HeaderRevision(want.Resp); rev == 0 && r != g.Rev() {
				t.Fatalf("etcd at revision %d, the requests reached %d", r, g.Rev())
			}
			for via, m := range d.members {
				d.check(ops, via, "final "+op.String(), want, do(m, op))
			}
		}
	}
	t.Logf("engine %s: %d requests in %v, revision %d, compacted %d; outcomes: %v",
		engine, ops, time.Since(start).Round(time.Millisecond), g.Rev(), g.CompactRev(), stats)
}

// v3DiffEtcd starts a single-member etcd on loopback, stopped in
// t.Cleanup, and returns a client of it.
func v3DiffEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "diff"
	cfg.Dir = t.TempDir()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.UnsafeNoFsync = true
	curl := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	purl := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{curl}, []url.URL{curl}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{purl}, []url.URL{purl}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("starting etcd: %v", err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		t.Fatalf("etcd: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("etcd did not start within 30s")
	}
	return v3DiffClient(t, curl.Host)
}

// v3DiffDial returns a gRPC client of member m (its client port).
func v3DiffDial(t *testing.T, m *Member) *clientv3.Client {
	t.Helper()
	return v3DiffClient(t, fmt.Sprintf("127.0.0.1:%d", m.ClientPort))
}

func v3DiffClient(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 10 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("gRPC client of %s: %v", endpoint, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}
