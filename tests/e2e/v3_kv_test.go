package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// revisionHeader is the header in which the curl API reports the MVCC
// revision of the store after a write (or at a read).
const revisionHeader = "X-Metcd-Revision"

// TestV3KV drives the KV service (Range, Put, DeleteRange, Txn, Compact)
// of a 3-member cluster through clientv3, and checks that the curl API
// sees the same MVCC store. The subtests share the cluster and run in
// order (Compaction last: it removes history the others read).
func TestV3KV(t *testing.T) {
	c := NewV3Cluster(t, Options{Size: 3})
	t.Run("Headers", func(t *testing.T) { testV3Headers(t, c) })
	t.Run("Range", func(t *testing.T) { testV3Range(t, c) })
	t.Run("PutDelete", func(t *testing.T) { testV3PutDelete(t, c) })
	t.Run("Txn", func(t *testing.T) { testV3Txn(t, c) })
	t.Run("TxnDefaultMaxOps", func(t *testing.T) { testV3TxnDefaultMaxOps(t, c) })
	t.Run("HTTPInterop", func(t *testing.T) { testV3HTTPInterop(t, c) })
	t.Run("Compaction", func(t *testing.T) { testV3Compaction(t, c) })
}

// testV3Headers: a fresh cluster is at revision 1 (as etcd), the first put
// makes revision 2, and every member answers with a full header of its own.
func testV3Headers(t *testing.T, c *Cluster) {
	c = c.For(t)
	for i := range c.Members {
		cli := c.V3Client(t, i)
		r := mustV3Get(t, cli, "hdr/k")
		c.checkHeader(t, fmt.Sprintf("Get on member %d", c.Members[i].ID), r.Header, i, 1)
		if r.Header.Revision != 1 {
			t.Errorf("fresh cluster: Get on member %d: header revision %d, want 1", c.Members[i].ID, r.Header.Revision)
		}
		if r.Count != 0 || len(r.Kvs) != 0 {
			t.Errorf("fresh cluster: Get hdr/k = %v (count %d), want nothing", kvStrings(r.Kvs), r.Count)
		}
	}
	li := c.WaitLeader(10 * time.Second)
	fol := (li + 1) % len(c.Members)
	pr := mustV3Put(t, c.V3Client(t, fol), "hdr/k", "v")
	c.checkHeader(t, "Put via a follower", pr.Header, fol, 2)
	if pr.Header.Revision != 2 {
		t.Errorf("first Put of a fresh cluster: header revision %d, want 2", pr.Header.Revision)
	}
	st, err := c.Status(li)
	if err != nil {
		t.Fatal(err)
	}
	clusterIDs := map[uint64]bool{}
	for i := range c.Members {
		r := mustV3Get(t, c.V3Client(t, i), "hdr/k")
		c.checkHeader(t, fmt.Sprintf("Get on member %d after the put", c.Members[i].ID), r.Header, i, 2)
		clusterIDs[r.Header.ClusterId] = true
		if r.Header.Revision != 2 {
			t.Errorf("Get on member %d: header revision %d, want 2", c.Members[i].ID, r.Header.Revision)
		}
		if r.Header.RaftTerm != st.Term {
			t.Errorf("Get on member %d: header raft_term %d, but the leader reports term %d on /admin/status", c.Members[i].ID, r.Header.RaftTerm, st.Term)
		}
		if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "v" || r.Kvs[0].CreateRevision != 2 || r.Kvs[0].ModRevision != 2 || r.Kvs[0].Version != 1 {
			t.Errorf("Get hdr/k on member %d = %v, want v with create=mod=2, version 1", c.Members[i].ID, r.Kvs)
		}
	}
	if len(clusterIDs) != 1 {
		t.Errorf("members answer with different cluster ids: %v", clusterIDs)
	}
}

func testV3Range(t *testing.T, c *Cluster) {
	c = c.For(t)
	cli := c.V3Client(t)
	const p = "range/"
	create := map[string]int64{}
	mod := map[string]int64{}
	put := func(k, v string) int64 {
		r := mustV3Put(t, cli, p+k, v)
		if create[k] == 0 {
			create[k] = r.Header.Revision
		}
		mod[k] = r.Header.Revision
		return r.Header.Revision
	}
	// Final state: key a..e, values v3 v1 v5 v2 v4, versions 1..5,
	// mod revision order a < e < d < c < b, create order a < b < c < d < e.
	final := map[string]string{"a": "v3", "b": "v1", "c": "v5", "d": "v2", "e": "v4"}
	put("a", final["a"])
	for _, k := range []string{"b", "c", "d", "e"} {
		put(k, "x-"+k+"-0")
	}
	firstC := create["c"]
	for _, u := range []struct {
		k string
		n int
	}{{"e", 4}, {"d", 3}, {"c", 2}, {"b", 1}} {
		for j := 1; j <= u.n; j++ {
			v := fmt.Sprintf("x-%s-%d", u.k, j)
			if j == u.n {
				v = final[u.k]
			}
			put(u.k, v)
		}
	}
	cur := mod["b"]
	all := []string{p + "a", p + "b", p + "c", p + "d", p + "e"}
	get := func(key string, opts ...clientv3.OpOption) *clientv3.GetResponse {
		t.Helper()
		return mustV3Get(t, cli, key, opts...)
	}

	// single key
	r := get(p + "c")
	if len(r.Kvs) != 1 || r.Count != 1 || r.More {
		t.Fatalf("Get range/c: %v count %d more %v, want one key", kvStrings(r.Kvs), r.Count, r.More)
	}
	kv := r.Kvs[0]
	if string(kv.Value) != "v5" || kv.Version != 3 || kv.CreateRevision != create["c"] || kv.ModRevision != mod["c"] || kv.Lease != 0 {
		t.Errorf("Get range/c = %+v, want value v5, version 3, create %d, mod %d, no lease", kv, create["c"], mod["c"])
	}
	if r.Header.Revision != cur {
		t.Errorf("Get range/c: header revision %d, want %d", r.Header.Revision, cur)
	}
	if r := get(p + "zz-missing"); len(r.Kvs) != 0 || r.Count != 0 {
		t.Errorf("Get of a missing key: %v count %d, want nothing", kvStrings(r.Kvs), r.Count)
	}

	// range_end, prefix, from-key
	checkKeys(t, "Get [range/b, range/d)", get(p+"b", clientv3.WithRange(p+"d")).Kvs, p+"b", p+"c")
	r = get(p, clientv3.WithPrefix())
	checkKeys(t, "Get prefix range/", r.Kvs, all...)
	if r.Count != 5 || r.More {
		t.Errorf("Get prefix: count %d more %v, want 5 false", r.Count, r.More)
	}
	for _, kv := range r.Kvs {
		k := strings.TrimPrefix(string(kv.Key), p)
		if string(kv.Value) != final[k] {
			t.Errorf("Get prefix: %s = %q, want %q", kv.Key, kv.Value, final[k])
		}
	}
	checkKeys(t, "Get from-key range/c", get(p+"c", clientv3.WithFromKey()).Kvs, p+"c", p+"d", p+"e")

	// limit
	r = get(p, clientv3.WithPrefix(), clientv3.WithLimit(2))
	checkKeys(t, "Get prefix limit 2", r.Kvs, p+"a", p+"b")
	if r.Count != 5 || !r.More {
		t.Errorf("Get prefix limit 2: count %d more %v, want 5 true", r.Count, r.More)
	}
	r = get(p, clientv3.WithPrefix(), clientv3.WithLimit(5))
	if len(r.Kvs) != 5 || r.More {
		t.Errorf("Get prefix limit 5: %d keys more %v, want 5 false", len(r.Kvs), r.More)
	}

	// past revisions
	r = get(p+"c", clientv3.WithRev(firstC))
	if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "x-c-0" || r.Kvs[0].Version != 1 || r.Kvs[0].ModRevision != firstC {
		t.Errorf("Get range/c at revision %d = %v, want x-c-0 version 1 mod %d", firstC, r.Kvs, firstC)
	}
	if r.Header.Revision != cur {
		t.Errorf("Get at a past revision: header revision %d, want the current one %d", r.Header.Revision, cur)
	}
	r = get(p, clientv3.WithPrefix(), clientv3.WithRev(create["d"]-1))
	if got, want := kvStrings(r.Kvs), []string{p + "a=v3", p + "b=x-b-0", p + "c=x-c-0"}; !slices.Equal(got, want) {
		t.Errorf("Get prefix at revision %d = %q, want %q", create["d"]-1, got, want)
	}

	// sort orders and targets
	sorts := []struct {
		target clientv3.SortTarget
		order  clientv3.SortOrder
		want   string
	}{
		{clientv3.SortByKey, clientv3.SortDescend, "edcba"},
		{clientv3.SortByKey, clientv3.SortAscend, "abcde"},
		{clientv3.SortByVersion, clientv3.SortAscend, "abcde"},
		{clientv3.SortByVersion, clientv3.SortDescend, "edcba"},
		{clientv3.SortByCreateRevision, clientv3.SortDescend, "edcba"},
		{clientv3.SortByModRevision, clientv3.SortAscend, "aedcb"},
		{clientv3.SortByModRevision, clientv3.SortDescend, "bcdea"},
		{clientv3.SortByValue, clientv3.SortAscend, "bdaec"},
		{clientv3.SortByValue, clientv3.SortDescend, "ceadb"},
		{clientv3.SortByValue, clientv3.SortNone, "bdaec"}, // a target without an order sorts ascending
	}
	for _, s := range sorts {
		var want []string
		for _, ch := range s.want {
			want = append(want, p+string(ch))
		}
		checkKeys(t, fmt.Sprintf("Get prefix sorted by %v %v", s.target, s.order), get(p, clientv3.WithPrefix(), clientv3.WithSort(s.target, s.order)).Kvs, want...)
	}
	r = get(p, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByValue, clientv3.SortDescend), clientv3.WithLimit(2))
	checkKeys(t, "Get prefix sorted by value descending, limit 2", r.Kvs, p+"c", p+"e")
	if r.Count != 5 || !r.More {
		t.Errorf("sorted with limit: count %d more %v, want 5 true", r.Count, r.More)
	}

	// keys only, count only
	r = get(p, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	checkKeys(t, "Get prefix keys-only", r.Kvs, all...)
	for _, kv := range r.Kvs {
		if len(kv.Value) != 0 {
			t.Errorf("keys-only: %s has value %q", kv.Key, kv.Value)
		}
		if kv.ModRevision != mod[strings.TrimPrefix(string(kv.Key), p)] {
			t.Errorf("keys-only: %s mod revision %d, want %d", kv.Key, kv.ModRevision, mod[strings.TrimPrefix(string(kv.Key), p)])
		}
	}
	r = get(p, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if len(r.Kvs) != 0 || r.Count != 5 {
		t.Errorf("count-only: %d kvs, count %d, want 0 kvs, count 5", len(r.Kvs), r.Count)
	}

	// min/max mod and create revision filters (Count is the range's count
	// before filtering, as etcd)
	filters := []struct {
		name string
		opt  clientv3.OpOption
		want []string
	}{
		{"min-mod-rev=mod(c)", clientv3.WithMinModRev(mod["c"]), []string{p + "b", p + "c"}},
		{"max-mod-rev=mod(e)", clientv3.WithMaxModRev(mod["e"]), []string{p + "a", p + "e"}},
		{"min-create-rev=create(d)", clientv3.WithMinCreateRev(create["d"]), []string{p + "d", p + "e"}},
		{"max-create-rev=create(b)", clientv3.WithMaxCreateRev(create["b"]), []string{p + "a", p + "b"}},
	}
	for _, f := range filters {
		r := get(p, clientv3.WithPrefix(), f.opt)
		checkKeys(t, "Get prefix "+f.name, r.Kvs, f.want...)
		if r.Count != 5 {
			t.Errorf("Get prefix %s: count %d, want 5 (etcd counts before filtering)", f.name, r.Count)
		}
	}

	// serializable reads on every member: eventually the local state has
	// the last write, and the header is the member's own
	for i := range c.Members {
		mc := c.V3Client(t, i)
		c.Eventually(10*time.Second, fmt.Sprintf("serializable Get on member %d sees revision %d", c.Members[i].ID, cur), func() error {
			ctx, cancel := ctxFor(v3Timeout)
			defer cancel()
			r, err := mc.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithSerializable())
			if err != nil {
				return err
			}
			if r.Header.MemberId != c.Members[i].ID {
				return fmt.Errorf("header member_id %d", r.Header.MemberId)
			}
			if r.Header.Revision < cur || len(r.Kvs) != 5 || string(r.Kvs[1].Value) != "v1" {
				return fmt.Errorf("revision %d, %v", r.Header.Revision, kvStrings(r.Kvs))
			}
			return nil
		})
	}

	ctx := v3ctx(t)
	_, err := cli.Get(ctx, "")
	wantV3Err(t, "Get of the empty key", err, rpctypes.ErrEmptyKey)
}

func testV3PutDelete(t *testing.T, c *Cluster) {
	c = c.For(t)
	li := c.WaitLeader(10 * time.Second)
	fol := (li + 1) % len(c.Members)
	cli := c.V3Client(t, fol) // writes through a follower
	ctx := v3ctx(t)

	r1 := mustV3Put(t, cli, "pd/k", "v1")
	c.checkHeader(t, "Put", r1.Header, fol, 3)
	if r1.PrevKv != nil {
		t.Errorf("Put without prev_kv returned prev_kv %v", r1.PrevKv)
	}
	r2 := mustV3Put(t, cli, "pd/k", "v2", clientv3.WithPrevKV())
	if r2.Header.Revision != r1.Header.Revision+1 {
		t.Errorf("second Put: revision %d, want %d", r2.Header.Revision, r1.Header.Revision+1)
	}
	if r2.PrevKv == nil || string(r2.PrevKv.Value) != "v1" || r2.PrevKv.ModRevision != r1.Header.Revision || r2.PrevKv.Version != 1 {
		t.Errorf("Put with prev_kv: prev_kv = %v, want v1 at mod %d version 1", r2.PrevKv, r1.Header.Revision)
	}
	g := mustV3Get(t, cli, "pd/k")
	if len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "v2" || g.Kvs[0].Version != 2 || g.Kvs[0].CreateRevision != r1.Header.Revision || g.Kvs[0].ModRevision != r2.Header.Revision {
		t.Errorf("Get pd/k = %v, want v2 version 2 create %d mod %d", g.Kvs, r1.Header.Revision, r2.Header.Revision)
	}
	if r := mustV3Put(t, cli, "pd/new", "x", clientv3.WithPrevKV()); r.PrevKv != nil {
		t.Errorf("Put of a new key with prev_kv: prev_kv = %v, want none", r.PrevKv)
	}

	// delete with prev_kv; deleting nothing does not make a revision
	d, err := cli.Delete(ctx, "pd/k", clientv3.WithPrevKV())
	if err != nil {
		t.Fatal(err)
	}
	if d.Deleted != 1 || len(d.PrevKvs) != 1 || string(d.PrevKvs[0].Value) != "v2" || d.PrevKvs[0].Version != 2 {
		t.Errorf("Delete pd/k with prev_kv: deleted %d prev %v, want 1 and v2 version 2", d.Deleted, d.PrevKvs)
	}
	delRev := d.Header.Revision
	d, err = cli.Delete(ctx, "pd/k")
	if err != nil {
		t.Fatal(err)
	}
	if d.Deleted != 0 || d.Header.Revision != delRev {
		t.Errorf("Delete of a missing key: deleted %d revision %d, want 0 and the unchanged revision %d", d.Deleted, d.Header.Revision, delRev)
	}
	r3 := mustV3Put(t, cli, "pd/k", "v3")
	g = mustV3Get(t, cli, "pd/k")
	if len(g.Kvs) != 1 || g.Kvs[0].Version != 1 || g.Kvs[0].CreateRevision != r3.Header.Revision {
		t.Errorf("recreated pd/k = %v, want version 1, create revision %d", g.Kvs, r3.Header.Revision)
	}

	// delete a range and a prefix
	for i := 1; i <= 5; i++ {
		mustV3Put(t, cli, fmt.Sprintf("pd/r/%d", i), strconv.Itoa(i))
	}
	d, err = cli.Delete(ctx, "pd/r/2", clientv3.WithRange("pd/r/4"))
	if err != nil || d.Deleted != 2 {
		t.Errorf("Delete [pd/r/2, pd/r/4): %v deleted %v, want 2", err, d)
	}
	before := d.Header.Revision
	d, err = cli.Delete(ctx, "pd/r/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	if err != nil {
		t.Fatal(err)
	}
	if d.Deleted != 3 || d.Header.Revision != before+1 {
		t.Errorf("Delete prefix pd/r/: deleted %d at revision %d, want 3 in one revision %d", d.Deleted, d.Header.Revision, before+1)
	}
	if got, want := kvStrings(d.PrevKvs), []string{"pd/r/1=1", "pd/r/4=4", "pd/r/5=5"}; !slices.Equal(got, want) {
		t.Errorf("Delete prefix prev_kvs = %q, want %q", got, want)
	}
	if g := mustV3Get(t, cli, "pd/r/", clientv3.WithPrefix()); g.Count != 0 {
		t.Errorf("after Delete prefix: %v remain", kvStrings(g.Kvs))
	}

	// ignore_value
	mustV3Put(t, cli, "pd/iv", "orig")
	riv := mustV3Put(t, cli, "pd/iv", "", clientv3.WithIgnoreValue())
	g = mustV3Get(t, cli, "pd/iv")
	if len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "orig" || g.Kvs[0].Version != 2 || g.Kvs[0].ModRevision != riv.Header.Revision {
		t.Errorf("after Put ignore_value: %v, want orig version 2 mod %d", g.Kvs, riv.Header.Revision)
	}
	_, err = cli.Put(ctx, "pd/missing", "", clientv3.WithIgnoreValue())
	wantV3Err(t, "Put ignore_value of a missing key", err, rpctypes.ErrKeyNotFound)
	_, err = cli.Put(ctx, "pd/iv", "x", clientv3.WithIgnoreValue())
	wantV3Err(t, "Put ignore_value with a value", err, rpctypes.ErrValueProvided)

	// lease, ignore_lease
	lg, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	mustV3Put(t, cli, "pd/l", "a", clientv3.WithLease(lg.ID))
	if g := mustV3Get(t, cli, "pd/l"); len(g.Kvs) != 1 || g.Kvs[0].Lease != int64(lg.ID) {
		t.Errorf("Put with lease: %v, want lease %x", g.Kvs, lg.ID)
	}
	mustV3Put(t, cli, "pd/l", "b", clientv3.WithIgnoreLease())
	if g := mustV3Get(t, cli, "pd/l"); len(g.Kvs) != 1 || g.Kvs[0].Lease != int64(lg.ID) || string(g.Kvs[0].Value) != "b" {
		t.Errorf("Put ignore_lease: %v, want b still on lease %x", g.Kvs, lg.ID)
	}
	ttl, err := cli.TimeToLive(ctx, lg.ID, clientv3.WithAttachedKeys())
	if err != nil || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "pd/l" {
		t.Errorf("TimeToLive with keys after ignore_lease: %v %v, want [pd/l]", ttl, err)
	}
	mustV3Put(t, cli, "pd/l", "c") // a put without lease detaches the key
	if g := mustV3Get(t, cli, "pd/l"); len(g.Kvs) != 1 || g.Kvs[0].Lease != 0 {
		t.Errorf("Put without lease over a leased key: %v, want lease 0", g.Kvs)
	}
	ttl, err = cli.TimeToLive(ctx, lg.ID, clientv3.WithAttachedKeys())
	if err != nil || len(ttl.Keys) != 0 {
		t.Errorf("TimeToLive after the key left the lease: %v %v, want no keys", ttl, err)
	}
	_, err = cli.Put(ctx, "pd/l", "d", clientv3.WithIgnoreLease(), clientv3.WithLease(lg.ID))
	wantV3Err(t, "Put ignore_lease with a lease", err, rpctypes.ErrLeaseProvided)
	_, err = cli.Put(ctx, "pd/missing", "x", clientv3.WithIgnoreLease())
	wantV3Err(t, "Put ignore_lease of a missing key", err, rpctypes.ErrKeyNotFound)
	_, err = cli.Put(ctx, "pd/l2", "x", clientv3.WithLease(0x7777777))
	wantV3Err(t, "Put with an unknown lease", err, rpctypes.ErrLeaseNotFound)
	if g := mustV3Get(t, cli, "pd/l2"); g.Count != 0 {
		t.Errorf("a refused Put wrote %v", kvStrings(g.Kvs))
	}

	_, err = cli.Put(ctx, "", "x")
	wantV3Err(t, "Put of the empty key", err, rpctypes.ErrEmptyKey)
	_, err = cli.Delete(ctx, "")
	wantV3Err(t, "Delete of the empty key", err, rpctypes.ErrEmptyKey)
}

func testV3Txn(t *testing.T, c *Cluster) {
	c = c.For(t)
	cli := c.V3Client(t)
	ctx := v3ctx(t)
	pa := mustV3Put(t, cli, "tx/a", "1")
	mustV3Put(t, cli, "tx/b", "x")
	modA := pa.Header.Revision

	r, err := cli.Txn(ctx).If(
		clientv3.Compare(clientv3.Value("tx/a"), "=", "1"),
		clientv3.Compare(clientv3.Version("tx/a"), "=", 1),
		clientv3.Compare(clientv3.CreateRevision("tx/nokey"), "=", 0),
		clientv3.Compare(clientv3.ModRevision("tx/a"), "=", modA),
		clientv3.Compare(clientv3.LeaseValue("tx/b"), "=", clientv3.NoLease),
	).Then(
		clientv3.OpPut("tx/a", "2"),
		clientv3.OpPut("tx/c", "c"),
		clientv3.OpGet("tx/a"),
	).Else(
		clientv3.OpPut("tx/fail", "x"),
	).Commit()
	if err != nil {
		t.Fatalf("Txn: %v", err)
	}
	if !r.Succeeded || len(r.Responses) != 3 {
		t.Fatalf("Txn: succeeded %v, %d responses, want true and 3", r.Succeeded, len(r.Responses))
	}
	txnRev := r.Header.Revision
	if r.Responses[0].GetResponsePut() == nil || r.Responses[1].GetResponsePut() == nil {
		t.Errorf("Txn responses 0,1 are not puts: %v", r.Responses)
	}
	if rr := r.Responses[2].GetResponseRange(); rr == nil || len(rr.Kvs) != 1 || string(rr.Kvs[0].Value) != "2" || rr.Kvs[0].ModRevision != txnRev {
		t.Errorf("Txn: the get after the put in the same txn = %v, want 2 at mod %d", rr, txnRev)
	}
	ga, gc := mustV3Get(t, cli, "tx/a"), mustV3Get(t, cli, "tx/c")
	if len(ga.Kvs) != 1 || len(gc.Kvs) != 1 || ga.Kvs[0].ModRevision != txnRev || gc.Kvs[0].ModRevision != txnRev || txnRev != ga.Header.Revision {
		t.Errorf("Txn writes: tx/a %v tx/c %v, want both at the txn's single revision %d", ga.Kvs, gc.Kvs, txnRev)
	}
	if g := mustV3Get(t, cli, "tx/fail"); g.Count != 0 {
		t.Errorf("Txn ran its failure branch too: %v", kvStrings(g.Kvs))
	}

	// failure branch
	r, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.Value("tx/a"), "=", "1")).
		Then(clientv3.OpPut("tx/then", "x")).
		Else(clientv3.OpPut("tx/else", "e"), clientv3.OpGet("tx/a")).Commit()
	if err != nil {
		t.Fatal(err)
	}
	if r.Succeeded || len(r.Responses) != 2 {
		t.Errorf("failing Txn: succeeded %v with %d responses, want false and 2", r.Succeeded, len(r.Responses))
	} else if rr := r.Responses[1].GetResponseRange(); rr == nil || len(rr.Kvs) != 1 || string(rr.Kvs[0].Value) != "2" {
		t.Errorf("failing Txn: get in else = %v, want tx/a=2", rr)
	}
	if g := mustV3Get(t, cli, "tx/else"); len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "e" {
		t.Errorf("else branch put: %v", kvStrings(g.Kvs))
	}
	if g := mustV3Get(t, cli, "tx/then"); g.Count != 0 {
		t.Errorf("then branch ran on failure: %v", kvStrings(g.Kvs))
	}

	// compare operators: each case is one compare and whether it holds
	lg, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	pl := mustV3Put(t, cli, "tx/l", "lv", clientv3.WithLease(lg.ID))
	cases := []struct {
		name string
		cmp  clientv3.Cmp
		want bool
	}{
		{"value > 1", clientv3.Compare(clientv3.Value("tx/a"), ">", "1"), true},
		{"value < 1", clientv3.Compare(clientv3.Value("tx/a"), "<", "1"), false},
		{"value != 2", clientv3.Compare(clientv3.Value("tx/a"), "!=", "2"), false},
		{"version = 2", clientv3.Compare(clientv3.Version("tx/a"), "=", 2), true},
		{"version > 2", clientv3.Compare(clientv3.Version("tx/a"), ">", 2), false},
		{"create = modA", clientv3.Compare(clientv3.CreateRevision("tx/a"), "=", modA), true},
		{"create > modA", clientv3.Compare(clientv3.CreateRevision("tx/a"), ">", modA), false},
		{"mod < txnRev+1", clientv3.Compare(clientv3.ModRevision("tx/a"), "<", txnRev+1), true},
		{"mod = modA", clientv3.Compare(clientv3.ModRevision("tx/a"), "=", modA), false},
		{"lease = granted", clientv3.Compare(clientv3.LeaseValue("tx/l"), "=", lg.ID), true},
		{"lease = other", clientv3.Compare(clientv3.LeaseValue("tx/l"), "=", lg.ID+1), false},
		{"missing key value = ''", clientv3.Compare(clientv3.Value("tx/nokey"), "=", ""), false},
		{"missing key version = 0", clientv3.Compare(clientv3.Version("tx/nokey"), "=", 0), true},
	}
	// (each txn carries a linearizable get: a txn of compares alone counts
	// as serializable in etcd and may be answered from a lagging member)
	lin := clientv3.OpGet("tx/a")
	for _, cs := range cases {
		r, err := cli.Txn(ctx).If(cs.cmp).Then(lin).Else(lin).Commit()
		if err != nil {
			t.Errorf("Txn if %s: %v", cs.name, err)
			continue
		}
		if r.Succeeded != cs.want {
			t.Errorf("Txn if %s: succeeded %v, want %v", cs.name, r.Succeeded, cs.want)
		}
		if r.Header.Revision != pl.Header.Revision {
			t.Errorf("read-only Txn if %s: revision %d, want unchanged %d", cs.name, r.Header.Revision, pl.Header.Revision)
		}
	}

	// compare over a prefix: holds only if it holds for every key
	mustV3Put(t, cli, "tx/p/1", "same")
	mustV3Put(t, cli, "tx/p/2", "same")
	r, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.Value("tx/p/"), "=", "same").WithPrefix()).Then(lin).Else(lin).Commit()
	if err != nil || !r.Succeeded {
		t.Errorf("Txn if every tx/p/ = same: %v %v, want success", r, err)
	}
	p3 := mustV3Put(t, cli, "tx/p/3", "other")
	r, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.Value("tx/p/"), "=", "same").WithPrefix()).Then(lin).Else(lin).Commit()
	if err != nil || r.Succeeded || r.Header.Revision != p3.Header.Revision {
		t.Errorf("Txn if every tx/p/ = same (one differs): %v %v, want failure at revision %d", r, err, p3.Header.Revision)
	}

	// nested txns
	r, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.Value("tx/a"), "=", "2")).Then(
		clientv3.OpTxn(
			[]clientv3.Cmp{clientv3.Compare(clientv3.Value("tx/c"), "=", "nope")},
			[]clientv3.Op{clientv3.OpPut("tx/n", "inner-then")},
			[]clientv3.Op{clientv3.OpPut("tx/n", "inner-else"), clientv3.OpTxn(
				[]clientv3.Cmp{clientv3.Compare(clientv3.Value("tx/c"), "=", "c")},
				[]clientv3.Op{clientv3.OpPut("tx/n2", "deep"), clientv3.OpGet("tx/n")},
				nil)},
		),
	).Commit()
	if err != nil {
		t.Fatalf("nested Txn: %v", err)
	}
	nestRev := r.Header.Revision
	if !r.Succeeded || len(r.Responses) != 1 {
		t.Fatalf("nested Txn: succeeded %v, %d responses", r.Succeeded, len(r.Responses))
	}
	inner := r.Responses[0].GetResponseTxn()
	if inner == nil || inner.Succeeded || len(inner.Responses) != 2 {
		t.Fatalf("nested Txn: inner response %v, want a failed txn with 2 responses", inner)
	}
	deep := inner.Responses[1].GetResponseTxn()
	if deep == nil || !deep.Succeeded || len(deep.Responses) != 2 {
		t.Fatalf("nested Txn: innermost response %v, want a succeeded txn with 2 responses", deep)
	}
	if rr := deep.Responses[1].GetResponseRange(); rr == nil || len(rr.Kvs) != 1 || string(rr.Kvs[0].Value) != "inner-else" {
		t.Errorf("nested Txn: innermost get = %v, want tx/n=inner-else", rr)
	}
	gn, gn2 := mustV3Get(t, cli, "tx/n"), mustV3Get(t, cli, "tx/n2")
	if len(gn.Kvs) != 1 || string(gn.Kvs[0].Value) != "inner-else" || len(gn2.Kvs) != 1 || string(gn2.Kvs[0].Value) != "deep" ||
		gn.Kvs[0].ModRevision != nestRev || gn2.Kvs[0].ModRevision != nestRev {
		t.Errorf("nested Txn writes: %v %v, want inner-else and deep, both at revision %d", gn.Kvs, gn2.Kvs, nestRev)
	}

	// a key written twice in one txn
	_, err = cli.Txn(ctx).Then(clientv3.OpPut("tx/dup", "1"), clientv3.OpPut("tx/dup", "2")).Commit()
	wantV3Err(t, "Txn putting one key twice", err, rpctypes.ErrDuplicateKey)
	_, err = cli.Txn(ctx).Then(clientv3.OpPut("", "1")).Commit()
	wantV3Err(t, "Txn putting the empty key", err, rpctypes.ErrEmptyKey)
}

// testV3TxnDefaultMaxOps: without --max-txn-ops a txn may hold 128 ops
// per branch (etcd's default), not 129.
func testV3TxnDefaultMaxOps(t *testing.T, c *Cluster) {
	c = c.For(t)
	cli := c.V3Client(t)
	ctx := v3ctx(t)
	ops := func(n int) []clientv3.Op {
		var o []clientv3.Op
		for i := range n {
			o = append(o, clientv3.OpPut(fmt.Sprintf("ops/%03d", i), "x"))
		}
		return o
	}
	r, err := cli.Txn(ctx).Then(ops(128)...).Commit()
	if err != nil || !r.Succeeded {
		t.Fatalf("Txn with 128 puts: %v %v", r, err)
	}
	if g := mustV3Get(t, cli, "ops/", clientv3.WithPrefix(), clientv3.WithCountOnly()); g.Count != 128 {
		t.Errorf("after a 128-put txn: %d keys, want 128", g.Count)
	}
	_, err = cli.Txn(ctx).Then(ops(129)...).Commit()
	wantV3Err(t, "Txn with 129 puts (default --max-txn-ops 128)", err, rpctypes.ErrTooManyOps)
	var cmps []clientv3.Cmp
	for range 129 {
		cmps = append(cmps, clientv3.Compare(clientv3.Version("ops/000"), ">", 0))
	}
	_, err = cli.Txn(ctx).If(cmps...).Commit()
	wantV3Err(t, "Txn with 129 compares", err, rpctypes.ErrTooManyOps)
}

// testV3HTTPInterop: the curl API and gRPC share one MVCC store, and the
// curl API reports the revision in a header.
func testV3HTTPInterop(t *testing.T, c *Cluster) {
	c = c.For(t)
	cli := c.V3Client(t)
	revOf := func(what string, r Resp) int64 {
		t.Helper()
		h := r.Header.Get(revisionHeader)
		n, err := strconv.ParseInt(h, 10, 64)
		if err != nil {
			t.Errorf("%s: header %s = %q, want a revision (response headers: %v)", what, revisionHeader, h, r.Header)
			return 0
		}
		return n
	}

	// curl PUT, then gRPC Get
	r, err := c.Put(1, "io/curl", []byte("from-curl"))
	if err != nil || r.Code != http.StatusNoContent {
		t.Fatalf("curl PUT io/curl: %v %v", r, err)
	}
	putRev := revOf("curl PUT io/curl", r)
	g := mustV3Get(t, cli, "io/curl")
	if len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "from-curl" {
		t.Fatalf("v3 Get of a key written with curl: %v", kvStrings(g.Kvs))
	}
	if putRev != 0 && (g.Kvs[0].ModRevision != putRev || g.Header.Revision != putRev) {
		t.Errorf("curl PUT reported revision %d; v3 Get says mod revision %d at revision %d", putRev, g.Kvs[0].ModRevision, g.Header.Revision)
	}
	if g.Kvs[0].Version != 1 {
		t.Errorf("curl PUT: version %d, want 1", g.Kvs[0].Version)
	}
	c.MustPut(2, "io/curl", "again")
	if g := mustV3Get(t, cli, "io/curl"); len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "again" || g.Kvs[0].Version != 2 || g.Kvs[0].CreateRevision != putRev {
		t.Errorf("v3 Get after a second curl PUT: %v, want again, version 2, create revision %d", g.Kvs, putRev)
	}

	// gRPC Put, then curl GET on every member
	p := mustV3Put(t, cli, "io/grpc", "from-grpc")
	for i := range c.Members {
		r, err := c.Get(i, "io/grpc")
		if err != nil || r.Code != http.StatusOK || r.Body != "from-grpc" {
			t.Errorf("curl GET io/grpc on member %d: %v %v, want 200 from-grpc", c.Members[i].ID, r, err)
			continue
		}
		if rev := revOf(fmt.Sprintf("curl GET on member %d", c.Members[i].ID), r); rev != 0 && rev != p.Header.Revision {
			t.Errorf("curl GET on member %d: %s %d, want the current revision %d", c.Members[i].ID, revisionHeader, rev, p.Header.Revision)
		}
	}

	// curl DELETE is a revision; gRPC no longer sees the key
	r, err = c.Delete(0, "io/grpc")
	if err != nil || r.Code != http.StatusNoContent {
		t.Fatalf("curl DELETE io/grpc: %v %v", r, err)
	}
	delRev := revOf("curl DELETE", r)
	if delRev != 0 && delRev != p.Header.Revision+1 {
		t.Errorf("curl DELETE: revision %d, want %d", delRev, p.Header.Revision+1)
	}
	g = mustV3Get(t, cli, "io/grpc")
	if g.Count != 0 || g.Header.Revision != p.Header.Revision+1 {
		t.Errorf("v3 Get after curl DELETE: %v at revision %d, want nothing at %d", kvStrings(g.Kvs), g.Header.Revision, p.Header.Revision+1)
	}
	// the deleted value is still in the history
	g = mustV3Get(t, cli, "io/grpc", clientv3.WithRev(p.Header.Revision))
	if len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "from-grpc" {
		t.Errorf("v3 Get at the revision before the curl DELETE: %v, want from-grpc", kvStrings(g.Kvs))
	}
	// gRPC delete, curl sees 404
	mustV3Put(t, cli, "io/both", "x")
	if _, err := cli.Delete(v3ctx(t), "io/both"); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Get(2, "io/both"); err != nil || r.Code != http.StatusNotFound {
		t.Errorf("curl GET of a key deleted through gRPC: %v %v, want 404", r, err)
	}
	// a curl key with a slash is the same key for gRPC
	c.MustPut(0, "io/dir/sub key", "spaced")
	if g := mustV3Get(t, cli, "io/dir/", clientv3.WithPrefix()); len(g.Kvs) != 1 || string(g.Kvs[0].Key) != "io/dir/sub key" {
		t.Errorf("v3 prefix read of a curl key with a space: %v", kvStrings(g.Kvs))
	}
}

func testV3Compaction(t *testing.T, c *Cluster) {
	c = c.For(t)
	cli := c.V3Client(t)
	ctx := v3ctx(t)
	var revs []int64
	for i := 1; i <= 5; i++ {
		revs = append(revs, mustV3Put(t, cli, "cmp/k", fmt.Sprintf("v%d", i)).Header.Revision)
	}
	cur := revs[4]
	cr, err := cli.Compact(ctx, revs[2], clientv3.WithCompactPhysical())
	if err != nil {
		t.Fatalf("Compact(%d, physical): %v", revs[2], err)
	}
	if cr.Header == nil || cr.Header.Revision < cur {
		t.Errorf("Compact response header %v, want revision >= %d", cr.Header, cur)
	}
	_, err = cli.Get(ctx, "cmp/k", clientv3.WithRev(revs[1]))
	wantV3Err(t, "Get below the compacted revision", err, rpctypes.ErrCompacted)
	_, err = cli.Get(ctx, "hdr/k", clientv3.WithRev(2))
	wantV3Err(t, "Get of another key below the compacted revision", err, rpctypes.ErrCompacted)
	for i, want := range map[int]string{2: "v3", 3: "v4", 4: "v5"} {
		g := mustV3Get(t, cli, "cmp/k", clientv3.WithRev(revs[i]))
		if len(g.Kvs) != 1 || string(g.Kvs[0].Value) != want {
			t.Errorf("Get at revision %d (>= compacted %d): %v, want %s", revs[i], revs[2], kvStrings(g.Kvs), want)
		}
	}
	_, err = cli.Compact(ctx, revs[2])
	wantV3Err(t, "Compact at the compacted revision again", err, rpctypes.ErrCompacted)
	_, err = cli.Compact(ctx, revs[0])
	wantV3Err(t, "Compact below the compacted revision", err, rpctypes.ErrCompacted)
	_, err = cli.Compact(ctx, cur+1000)
	wantV3Err(t, "Compact at a future revision", err, rpctypes.ErrFutureRev)
	_, err = cli.Get(ctx, "cmp/k", clientv3.WithRev(cur+1000))
	wantV3Err(t, "Get at a future revision", err, rpctypes.ErrFutureRev)

	// compaction is replicated: every member refuses the old revision
	// locally, and still serves the current state
	for i := range c.Members {
		mc := c.V3Client(t, i)
		c.Eventually(10*time.Second, fmt.Sprintf("member %d answers ErrCompacted locally", c.Members[i].ID), func() error {
			ctx, cancel := ctxFor(v3Timeout)
			defer cancel()
			_, err := mc.Get(ctx, "cmp/k", clientv3.WithRev(revs[1]), clientv3.WithSerializable())
			if !isV3Err(err, rpctypes.ErrCompacted) {
				return fmt.Errorf("serializable Get at %d: %v", revs[1], err)
			}
			return nil
		})
		g := mustV3Get(t, mc, "range/", clientv3.WithPrefix(), clientv3.WithSerializable())
		if len(g.Kvs) != 5 {
			t.Errorf("member %d after compaction: range/ = %v, want the 5 keys", c.Members[i].ID, kvStrings(g.Kvs))
		}
	}
	// writes continue after the compaction
	p := mustV3Put(t, cli, "cmp/k", "v6")
	if p.Header.Revision != cur+1 {
		t.Errorf("Put after compaction: revision %d, want %d", p.Header.Revision, cur+1)
	}
}

// TestV3Limits runs a cluster with small limits: --max-txn-ops 4,
// --max-request-bytes 16384 and --quota-backend-bytes 1 MiB. Over the
// quota the cluster raises a NOSPACE alarm: writes are refused with
// ErrNoSpace while reads, deletes, compaction and defragmentation work,
// and after AlarmDisarm (with the space reclaimed) writes work again.
func TestV3Limits(t *testing.T) {
	const quota = 1 << 20
	c := NewV3Cluster(t, Options{Size: 3, Extra: []string{
		"--max-txn-ops", "4",
		"--max-request-bytes", "16384",
		"--quota-backend-bytes", strconv.Itoa(quota),
	}})
	cli := c.V3Client(t)

	t.Run("MaxTxnOps", func(t *testing.T) {
		ctx := v3ctx(t)
		var ops []clientv3.Op
		for i := range 5 {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("lim/%d", i), "x"))
		}
		if r, err := cli.Txn(ctx).Then(ops[:4]...).Commit(); err != nil || !r.Succeeded {
			t.Errorf("Txn with 4 puts under --max-txn-ops 4: %v %v", r, err)
		}
		_, err := cli.Txn(ctx).Then(ops...).Commit()
		wantV3Err(t, "Txn with 5 puts under --max-txn-ops 4", err, rpctypes.ErrTooManyOps)
		_, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.Version("lim/0"), ">", 0)).Else(ops...).Commit()
		wantV3Err(t, "Txn with 5 failure ops under --max-txn-ops 4", err, rpctypes.ErrTooManyOps)
		if g := mustV3Get(t, cli, "lim/4"); g.Count != 0 {
			t.Errorf("a refused txn wrote lim/4")
		}
	})

	t.Run("MaxRequestBytes", func(t *testing.T) {
		ctx := v3ctx(t)
		if _, err := cli.Put(ctx, "big/ok", strings.Repeat("a", 12000)); err != nil {
			t.Errorf("Put of 12000 bytes under --max-request-bytes 16384: %v", err)
		}
		_, err := cli.Put(ctx, "big/no", strings.Repeat("a", 20000))
		wantV3Err(t, "Put of 20000 bytes under --max-request-bytes 16384", err, rpctypes.ErrRequestTooLarge)
		_, err = cli.Txn(ctx).Then(clientv3.OpPut("big/t1", strings.Repeat("b", 9000)), clientv3.OpPut("big/t2", strings.Repeat("b", 9000))).Commit()
		wantV3Err(t, "Txn of 18000 bytes under --max-request-bytes 16384", err, rpctypes.ErrRequestTooLarge)
		// Keys have a limit of their own (bbolt's keys are at most 32 KiB),
		// counted as stored: 0x00 bytes count twice.
		_, err = cli.Put(ctx, "big/"+strings.Repeat("\x00", 8*1024), "v")
		if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "key is too large") {
			t.Errorf("Put of a key of 8 KiB of 0x00 bytes: %v, want InvalidArgument key is too large", err)
		}
		if g := mustV3Get(t, cli, "big/", clientv3.WithPrefix()); !slices.Equal(kvKeys(g.Kvs), []string{"big/ok"}) {
			t.Errorf("after the refused requests: keys %q, want [big/ok]", kvKeys(g.Kvs))
		}
	})

	t.Run("Quota", func(t *testing.T) {
		c := c.For(t)
		ctx := v3ctx(t)
		if al, err := cli.AlarmList(ctx); err != nil || len(al.Alarms) != 0 {
			t.Fatalf("AlarmList before filling: %v %v, want no alarm", al, err)
		}
		val := strings.Repeat("q", 12000)
		var written []string
		var nospace error
		for i := range 400 { // 4.8 MB, well over the 1 MiB quota
			k := fmt.Sprintf("quota/%03d", i)
			_, err := cli.Put(ctx, k, val)
			if err != nil {
				nospace = err
				break
			}
			written = append(written, k)
		}
		if nospace == nil {
			t.Fatalf("wrote %d x 12000 bytes under --quota-backend-bytes %d without ErrNoSpace", len(written), quota)
		}
		wantV3Err(t, fmt.Sprintf("Put after %d values of 12000 bytes", len(written)), nospace, rpctypes.ErrNoSpace)
		t.Logf("ErrNoSpace after %d puts", len(written))
		if len(written) == 0 {
			t.Fatalf("the first put was refused")
		}

		// the alarm is raised cluster-wide
		var alarmMember uint64
		c.Eventually(10*time.Second, "a NOSPACE alarm in AlarmList", func() error {
			al, err := cli.AlarmList(ctx)
			if err != nil {
				return err
			}
			for _, a := range al.Alarms {
				if a.Alarm == pb.AlarmType_NOSPACE {
					alarmMember = a.MemberID
					return nil
				}
			}
			return fmt.Errorf("alarms %v", al.Alarms)
		})
		if c.Index(alarmMember) < 0 {
			t.Errorf("NOSPACE alarm on member %d, not a member of the cluster", alarmMember)
		}
		for i := range c.Members {
			mc := c.V3Client(t, i)
			// A linearizable call first, so that this member has applied
			// the alarm that its Status and /health report.
			if _, err := mc.AlarmList(ctx); err != nil {
				t.Fatalf("AlarmList on member %d: %v", c.Members[i].ID, err)
			}
			_, err := mc.Put(ctx, "quota/small", "x")
			wantV3Err(t, fmt.Sprintf("small Put on member %d under the NOSPACE alarm", c.Members[i].ID), err, rpctypes.ErrNoSpace)
			_, err = mc.Txn(ctx).Then(clientv3.OpPut("quota/small", "x")).Commit()
			wantV3Err(t, fmt.Sprintf("Txn with a put on member %d under the NOSPACE alarm", c.Members[i].ID), err, rpctypes.ErrNoSpace)
			s, err := mc.Status(ctx, c.Members[i].V3Endpoint())
			if err != nil {
				t.Errorf("Status on member %d: %v", c.Members[i].ID, err)
			} else if !slices.ContainsFunc(s.Errors, func(e string) bool { return strings.Contains(e, "NOSPACE") }) {
				t.Errorf("Status on member %d: errors %q, want the NOSPACE alarm listed (as etcd)", c.Members[i].ID, s.Errors)
			}
			// reads still work
			g := mustV3Get(t, mc, "quota/", clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithSerializable())
			if g.Count < int64(len(written))-1 {
				t.Errorf("member %d: count of quota/ = %d under the alarm, want about %d", c.Members[i].ID, g.Count, len(written))
			}
		}
		if r, err := c.Put(0, "quota/curl", []byte("x")); err != nil || r.Code == http.StatusNoContent {
			t.Errorf("curl PUT under the NOSPACE alarm: %v %v, want a refusal", r, err)
		}
		// /health says why, as etcd's does, and can be told to ignore it
		for i := range c.Members {
			if r, err := c.Do(i, http.MethodGet, "/health", nil); err != nil || r.Code != http.StatusServiceUnavailable || !strings.Contains(r.Body, "ALARM NOSPACE") {
				t.Errorf("GET /health on member %d under the NOSPACE alarm: %v %v, want 503 ALARM NOSPACE", c.Members[i].ID, r, err)
			}
		}
		if r, err := c.Do(0, http.MethodGet, "/health?exclude=NOSPACE", nil); err != nil || r.Code != http.StatusOK {
			t.Errorf("GET /health?exclude=NOSPACE under the NOSPACE alarm: %v %v, want 200", r, err)
		}
		if _, err := cli.Grant(ctx, 60); !isV3Err(err, rpctypes.ErrNoSpace) {
			t.Errorf("LeaseGrant under the NOSPACE alarm: %v, want %v (as etcd)", err, rpctypes.ErrNoSpace)
		}
		g := mustV3Get(t, cli, written[0])
		if len(g.Kvs) != 1 || string(g.Kvs[0].Value) != val {
			t.Errorf("Get %s under the alarm: %d kvs", written[0], len(g.Kvs))
		}
		// deletes, compaction and defragmentation still work
		d, err := cli.Delete(ctx, "quota/", clientv3.WithPrefix())
		if err != nil {
			t.Fatalf("Delete under the NOSPACE alarm: %v", err)
		}
		if d.Deleted < int64(len(written)) {
			t.Errorf("Delete quota/: deleted %d, want >= %d", d.Deleted, len(written))
		}
		if _, err := cli.Compact(ctx, d.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
			t.Fatalf("Compact under the NOSPACE alarm: %v", err)
		}
		// defragment every member until the space is back under the
		// quota (physical compaction may finish in the background). The
		// quota is checked against the data in use (db_size_in_use): a
		// pebble directory keeps recycled WAL files whatever was deleted.
		start := time.Now()
		c.Eventually(30*time.Second, "db size in use under the quota after delete, compact and defragment on every member", func() error {
			var over []string
			for i := range c.Members {
				dctx, cancel := ctxFor(60 * time.Second)
				_, err := cli.Defragment(dctx, c.Members[i].V3Endpoint())
				cancel()
				if err != nil {
					t.Fatalf("Defragment member %d: %v", c.Members[i].ID, err)
				}
				s, err := cli.Status(ctx, c.Members[i].V3Endpoint())
				if err != nil {
					return fmt.Errorf("Status member %d: %v", c.Members[i].ID, err)
				}
				if s.DbSizeQuota != quota {
					t.Errorf("Status member %d: db_size_quota %d, want %d", c.Members[i].ID, s.DbSizeQuota, quota)
				}
				if s.DbSizeInUse >= quota || s.DbSizeInUse > s.DbSize {
					over = append(over, fmt.Sprintf("member %d: db size %d (in use %d)", c.Members[i].ID, s.DbSize, s.DbSizeInUse))
				}
			}
			if len(over) > 0 {
				return fmt.Errorf("over the quota of %d: %v", quota, over)
			}
			return nil
		})
		t.Logf("space reclaimed %v after the compaction", time.Since(start))
		// still refused until the alarm is disarmed
		_, err = cli.Put(ctx, "quota/after", "x")
		wantV3Err(t, "Put after reclaiming space but before disarming", err, rpctypes.ErrNoSpace)

		// Every member whose own quota check failed has raised its own
		// alarm, as in etcd; an empty AlarmMember disarms them all (what
		// etcdctl alarm disarm sends).
		ar, err := cli.AlarmDisarm(ctx, &clientv3.AlarmMember{})
		if err != nil {
			t.Fatalf("AlarmDisarm: %v", err)
		}
		t.Logf("AlarmDisarm answered %v", ar.Alarms)
		c.Eventually(10*time.Second, "no alarm left", func() error {
			al, err := cli.AlarmList(ctx)
			if err != nil {
				return err
			}
			if len(al.Alarms) != 0 {
				return fmt.Errorf("alarms %v", al.Alarms)
			}
			return nil
		})
		for i := range c.Members {
			mc := c.V3Client(t, i)
			k := fmt.Sprintf("quota/after/%d", i)
			if _, err := mc.Put(ctx, k, "ok"); err != nil {
				t.Errorf("Put on member %d after AlarmDisarm: %v", c.Members[i].ID, err)
			}
		}
		c.MustPut(0, "quota/curl", "ok")
		if r, err := c.Do(0, http.MethodGet, "/health", nil); err != nil || r.Code != http.StatusOK {
			t.Errorf("GET /health after AlarmDisarm: %v %v, want 200", r, err)
		}
	})
}
