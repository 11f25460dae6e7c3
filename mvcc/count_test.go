package mvcc

import (
	"fmt"
	"math/rand/v2"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// TestCountEveryKey checks that counting the whole key space, which reads
// the live-key counter, agrees with a scan of the keys, at the current
// revision and inside a write transaction, and that counting at a past
// revision still gives that revision's count. Deletes of ranges, with and
// without prev_kv, transactions and lease revokes all move the counter.
func TestCountEveryKey(t *testing.T) {
	e := newEnv(t)
	rng := rand.New(rand.NewPCG(7, 11))
	key := func() []byte { return fmt.Appendf(nil, "k%02d", rng.IntN(40)) }
	all := func(rev int64, countOnly bool) *pb.RangeRequest {
		return &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev, CountOnly: countOnly, KeysOnly: !countOnly}
	}
	counts := map[int64]int64{} // revision → keys live at it
	check := func(what string) {
		t.Helper()
		scan := e.mustRange(all(0, false))
		got := e.mustRange(all(0, true))
		if got.Count != int64(len(scan.Kvs)) || scan.Count != int64(len(scan.Kvs)) {
			t.Fatalf("after %s: count only %d, scan %d keys (count %d)", what, got.Count, len(scan.Kvs), scan.Count)
		}
		// A range that is not the whole space is scanned.
		if part := e.mustRange(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte{0}, CountOnly: true}); part.Count != got.Count {
			t.Fatalf("after %s: whole space %d, from k %d", what, got.Count, part.Count)
		}
		counts[e.s.Rev()] = got.Count
	}
	for i := range 400 {
		switch op := rng.IntN(6); op {
		case 0, 1:
			e.put(string(key()), "v")
			check("put")
		case 2:
			a, b := key(), key()
			if string(a) > string(b) {
				a, b = b, a
			}
			if _, err := e.delReq(&pb.DeleteRangeRequest{Key: a, RangeEnd: b, PrevKv: i%2 == 0}); err != nil {
				t.Fatal(err)
			}
			check("delete range")
		case 3:
			// Three distinct keys: etcd refuses a key twice in a txn.
			n := rng.IntN(38)
			k := func(d int) []byte { return fmt.Appendf(nil, "k%02d", n+d) }
			if _, err := e.txn(&pb.TxnRequest{Success: []*pb.RequestOp{
				{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: k(0), Value: []byte("t")}}},
				{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: k(1)}}},
				{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: k(2), Value: []byte("t")}}},
			}}); err != nil {
				t.Fatal(err)
			}
			check("txn")
		case 4:
			if _, err := e.s.DeleteKeys(e.ob, [][]byte{key(), key()}); err != nil {
				t.Fatal(err)
			}
			e.commit()
			check("revoke")
		case 5:
			// Inside a write transaction the count sees its writes.
			w := e.s.Write(e.ob)
			before, err := w.Range(all(0, true))
			if err != nil {
				t.Fatal(err)
			}
			k := fmt.Appendf(nil, "new%03d", i)
			if _, err := w.Put(&pb.PutRequest{Key: k}); err != nil {
				t.Fatal(err)
			}
			after, err := w.Range(all(0, true))
			if err != nil {
				t.Fatal(err)
			}
			if after.Count != before.Count+1 {
				t.Fatalf("count in a write transaction: %d after a new key, %d before", after.Count, before.Count)
			}
			if _, err := w.DeleteRange(&pb.DeleteRangeRequest{Key: []byte("new"), RangeEnd: []byte("new999")}); err != nil {
				t.Fatal(err)
			}
			w.End()
			e.commit()
			check("write transaction")
		}
	}
	for rev, want := range counts {
		if rev == e.s.Rev() {
			continue
		}
		if got := e.mustRange(all(rev, true)).Count; got != want {
			t.Fatalf("count at revision %d: %d, want %d", rev, got, want)
		}
	}
}
