package difftest

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/metcd/metcd/internal/freeport"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

func freeURL(t *testing.T) url.URL {
	t.Helper()
	urls, err := freeport.URLs(1) // never the same port twice
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(urls[0])
	if err != nil {
		t.Fatal(err)
	}
	return *u
}

// startEtcds starts an etcd cluster of n members in this process and
// returns a client of each member.
func startEtcds(t *testing.T, n int) []*clientv3.Client {
	t.Helper()
	var (
		cfgs    []*embed.Config
		initial []string
	)
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = t.TempDir()
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfg.UnsafeNoFsync = true
		curl, purl := freeURL(t), freeURL(t)
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{curl}, []url.URL{curl}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{purl}, []url.URL{purl}
		initial = append(initial, cfg.Name+"="+purl.String())
		cfgs = append(cfgs, cfg)
	}
	var clis []*clientv3.Client
	for _, cfg := range cfgs {
		cfg.InitialCluster = strings.Join(initial, ",")
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Close)
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{cfg.ListenClientUrls[0].Host},
			DialTimeout: 10 * time.Second,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		clis = append(clis, cli)
		defer func() {
			select {
			case <-e.Server.ReadyNotify():
			case <-time.After(30 * time.Second):
				t.Fatalf("etcd %s did not start", cfg.Name)
			}
		}()
	}
	return clis
}

// TestEtcdClusterAgainstEtcd runs a sequence against a three-member etcd
// cluster, through its members in turn, and against a single etcd: the
// answers must be the same, which checks Gen, Client (its barrier before
// serializable requests on followers, PanicsEtcd) and Compare against
// etcd itself.
func TestEtcdClusterAgainstEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four etcds")
	}
	ref := NewClient(startEtcds(t, 1)[0])
	var members []*Client
	for _, cli := range startEtcds(t, 3) {
		c := NewClient(cli)
		c.Barrier = true
		members = append(members, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i, id := range DefaultLeases {
		want, err := ref.GrantLease(ctx, id, 3600)
		if err != nil {
			t.Fatal(err)
		}
		got, err := members[i%3].GrantLease(ctx, id, 3600)
		if err := Compare(Result{Resp: want}, Result{Resp: got, Err: err}); err != nil {
			t.Fatalf("lease grant: %v", err)
		}
	}
	seed := Seed(t, "DIFFTEST_SEED")
	g := NewGen(seed, Options{})
	stats := Stats{}
	for i := range 300 {
		op := g.Next()
		m := members[i%3]
		if req, ok := op.Req.(*pb.TxnRequest); ok {
			panics, err := ref.PanicsEtcd(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if panics {
				stats["txn that crashes etcd"]++
				continue
			}
		}
		var want, got Result
		want.Resp, want.Err = ref.Do(ctx, op)
		got.Resp, got.Err = m.Do(ctx, op)
		if err := Compare(want, got); err != nil {
			t.Fatalf("seed %d, op %d via member %d: %s: %v", seed, i, i%3, op, err)
		}
		stats.Add(op, want.Err)
		g.Observe(op, want.Resp, want.Err)
	}
	t.Logf("revision %d, compacted %d; outcomes: %v", g.Rev(), g.CompactRev(), stats)
	if g.Rev() < 50 {
		t.Fatalf("only %d revisions", g.Rev())
	}
}
