package mvcc

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/engines"
	"github.com/metcd/metcd/storage/overlay"
)

func eventStrings(t testing.TB, s *Store, r storage.Reader, from int64, key, end string) ([]string, error) {
	t.Helper()
	var out []string
	err := s.History(r, from, []byte(key), bytesOrNil(end), func(ev *mvccpb.Event) bool {
		kv := ev.Kv
		out = append(out, fmt.Sprintf("%v %q=%q c%d m%d v%d l%d", ev.Type, kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease))
		return true
	})
	return out, err
}

func TestHistory(t *testing.T) {
	e := newEnv(t)
	e.put("a", "1") // 2
	e.put("b", "2") // 3
	if _, err := e.txn(&pb.TxnRequest{Success: []*pb.RequestOp{putOp("a", "3", 0), delOp("b", "")}}); err != nil {
		t.Fatal(err) // 4
	}
	e.put("c", "4") // 5
	got, err := eventStrings(t, e.s, e.eng, 3, "\x00", "\x00")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`PUT "b"="2" c3 m3 v1 l0`,
		`PUT "a"="3" c2 m4 v2 l0`,
		`DELETE "b"="" c0 m4 v0 l0`,
		`PUT "c"="4" c5 m5 v1 l0`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("history from 3:\n%q\nwant\n%q", got, want)
	}
	got, _ = eventStrings(t, e.s, e.eng, 0, "a", "")
	if want := []string{`PUT "a"="1" c2 m2 v1 l0`, `PUT "a"="3" c2 m4 v2 l0`}; !slices.Equal(got, want) {
		t.Fatalf("history of a: %q", got)
	}
	got, _ = eventStrings(t, e.s, e.eng, 1, "b", "c")
	if len(got) != 2 {
		t.Fatalf("history of [b, c): %q", got)
	}
	n := 0
	if err := e.s.History(e.eng, 1, []byte("a"), []byte{0}, func(*mvccpb.Event) bool { n++; return n < 2 }); err != nil || n != 2 {
		t.Fatalf("stop early: %d %v", n, err)
	}
	if _, err := e.compact(4); err != nil {
		t.Fatal(err)
	}
	_, err = eventStrings(t, e.s, e.eng, 3, "\x00", "\x00")
	wantErr(t, "history below compaction", err, ErrCompacted)
	before, err := eventStrings(t, e.s, e.eng, 4, "\x00", "\x00")
	if err != nil || len(before) != 3 {
		t.Fatalf("history at the compacted revision: %q %v", before, err)
	}
	if err := e.s.PhysicalCompact(e.eng, 4, 0, nil); err != nil {
		t.Fatal(err)
	}
	after, err := eventStrings(t, e.s, e.eng, 4, "\x00", "\x00")
	if err != nil || !slices.Equal(after, before) {
		t.Fatalf("after physical compaction: %q %v, want %q", after, err, before)
	}
}

// randomWrites applies n random write requests to e, one batch each or
// grouped, and returns the last revision.
func randomWrites(t testing.TB, rnd *rand.Rand, s *Store, eng storage.Engine, n int) {
	t.Helper()
	keys := []string{"a", "b", "c", "d", "e", "a/1", "a/2", "b\x00", "\xff"}
	key := func() []byte { return []byte(keys[rnd.IntN(len(keys))]) }
	ob := overlay.New(eng)
	for i := 0; i < n; i++ {
		var err error
		switch x := rnd.IntN(10); {
		case x < 6:
			w := s.Write(ob)
			_, err = w.Put(&pb.PutRequest{Key: key(), Value: []byte(fmt.Sprint(i)), Lease: int64(rnd.IntN(3))})
			w.End()
		case x < 8:
			k := key()
			end := []byte(nil)
			if rnd.IntN(3) == 0 {
				end = append(bytes.Clone(k), 'z')
			}
			w := s.Write(ob)
			_, err = w.DeleteRange(&pb.DeleteRangeRequest{Key: k, RangeEnd: end})
			w.End()
		default:
			k1, k2 := key(), key()
			if bytes.Equal(k1, k2) {
				continue
			}
			_, err = s.Txn(ob, &pb.TxnRequest{Success: []*pb.RequestOp{
				{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: k1, Value: []byte("t")}}},
				{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: k2, Value: []byte("u")}}},
			}})
		}
		if err != nil {
			t.Fatal(err)
		}
		if rnd.IntN(3) == 0 || i == n-1 {
			if err := commitBatch(eng, ob); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// snapshotReads records the answer of a full range at every revision from
// lo to hi.
func snapshotReads(t testing.TB, s *Store, r storage.Reader, lo, hi int64) map[int64]*pb.RangeResponse {
	t.Helper()
	out := make(map[int64]*pb.RangeResponse)
	for rev := lo; rev <= hi; rev++ {
		resp, err := s.Range(r, &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev})
		if err != nil {
			t.Fatalf("range @%d: %v", rev, err)
		}
		resp.Header = nil
		out[rev] = resp
	}
	return out
}

func countPrefix(t testing.TB, r storage.Reader, lower, upper []byte) int {
	t.Helper()
	it, err := r.NewIterator(storage.IterOptions{Lower: lower, Upper: upper})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for it.Next() {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPhysicalCompact(t *testing.T) {
	for _, name := range engines.Names() {
		t.Run(name, func(t *testing.T) { testPhysicalCompact(t, openEngine(t, name)) })
	}
}

func testPhysicalCompact(t *testing.T, eng storage.Engine) {
	rnd := rand.New(rand.NewPCG(1, 2))
	s, err := Open(eng, Options{})
	if err != nil {
		t.Fatal(err)
	}
	randomWrites(t, rnd, s, eng, 300)
	n := s.Rev()
	before := snapshotReads(t, s, eng, 1, n)
	hist := make(map[int64][]string)
	for rev := int64(1); rev <= n; rev++ {
		hist[rev], _ = eventStrings(t, s, eng, rev, "\x00", "\x00")
	}
	idx0, rec0 := countPrefix(t, eng, prefixIndex, endIndex), countPrefix(t, eng, prefixRev, endRev)

	for step, c := range []int64{n / 3, n / 3, 2 * n / 3, n} {
		if c > s.CompactRev() {
			ob := overlay.New(eng)
			if _, err := s.Compact(ob, c); err != nil {
				t.Fatal(err)
			}
			if err := commitBatch(eng, ob); err != nil {
				t.Fatal(err)
			}
		}
		// Compact concurrently with writes of new revisions and with reads
		// at or above c, on the live engine and on snapshots.
		var wg sync.WaitGroup
		errc := make(chan error, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- s.PhysicalCompact(eng, c, 1+step*5, nil)
		}()
		wrnd := rand.New(rand.NewPCG(uint64(step), 9))
		rrnd := rand.New(rand.NewPCG(uint64(step), 10))
		stop := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			for {
				select {
				case <-stop:
					return
				default:
				}
				rev := c + rrnd.Int64N(n-c+1)
				var r storage.Reader = eng
				var snap storage.Snapshot
				if rrnd.IntN(2) == 0 {
					if snap, err = eng.NewSnapshot(); err != nil {
						t.Error(err)
						return
					}
					r = snap
				}
				resp, err := s.Range(r, &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev})
				if snap != nil {
					snap.Close()
				}
				if err != nil {
					t.Errorf("concurrent range @%d: %v", rev, err)
					return
				}
				resp.Header = nil
				if !proto.Equal(resp, before[rev]) {
					t.Errorf("concurrent range @%d during compaction at %d:\n%s\nwant\n%s", rev, c, text(resp), text(before[rev]))
					return
				}
			}
		}()
		// New revisions (beyond n) meanwhile must not disturb anything.
		randomWrites(t, wrnd, s, eng, 30)
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		close(stop)
		wg.Wait()
		if t.Failed() {
			return
		}
		if s.PhysicalRev() != c {
			t.Fatalf("physical rev %d, want %d", s.PhysicalRev(), c)
		}
		after := snapshotReads(t, s, eng, c, n)
		for rev := c; rev <= n; rev++ {
			if !proto.Equal(after[rev], before[rev]) {
				t.Fatalf("range @%d after compaction at %d:\n%s\nwant\n%s", rev, c, text(after[rev]), text(before[rev]))
			}
		}
		if c > 1 {
			_, err := s.Range(eng, &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: c - 1})
			wantErr(t, "range below compaction", err, ErrCompacted)
		}
		got, err := eventStrings(t, s, eng, c, "\x00", "\x00")
		if err != nil {
			t.Fatal(err)
		}
		if want := hist[c]; len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
			t.Fatalf("history from %d after compaction:\n%q\nwant\n%q", c, got, want)
		}
		checkCompacted(t, eng, c)
	}
	idx1, rec1 := countPrefix(t, eng, prefixIndex, endIndex), countPrefix(t, eng, prefixRev, endRev)
	if idx1 >= idx0 || rec1 >= rec0 {
		t.Fatalf("index %d → %d entries, records %d → %d: nothing removed", idx0, idx1, rec0, rec1)
	}
	t.Logf("index %d → %d entries, records %d → %d", idx0, idx1, rec0, rec1)
	s2, err := Open(eng, Options{})
	if err != nil || s2.PhysicalRev() != n || s2.CompactRev() != n {
		t.Fatalf("reopen: %v physical %d compact %d", err, s2.PhysicalRev(), s2.CompactRev())
	}
}

// checkCompacted checks the layout after a physical compaction at c: per
// key at most one index entry at or below c, a put, and no revision record
// below c that no index entry names.
func checkCompacted(t testing.TB, r storage.Reader, c int64) {
	t.Helper()
	it, err := r.NewIterator(storage.IterOptions{Lower: prefixIndex, Upper: endIndex})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	named := make(map[revision]bool)
	low := make(map[string]int)
	for it.Next() {
		prefix, rv, err := splitIndexKey(it.Key())
		if err != nil {
			t.Fatal(err)
		}
		named[rv] = true
		if rv.main <= c {
			low[string(prefix)]++
			if it.Value()[0] != kindPut || low[string(prefix)] > 1 {
				t.Fatalf("after compaction at %d: index entry %v of %q kept", c, rv, unescapeIndexKey(prefix))
			}
		}
	}
	rit, err := r.NewIterator(storage.IterOptions{Lower: prefixRev, Upper: revKey(revision{main: c})})
	if err != nil {
		t.Fatal(err)
	}
	defer rit.Close()
	for rit.Next() {
		if rv := parseRev(rit.Key()[len(prefixRev):]); !named[rv] {
			t.Fatalf("after compaction at %d: record %v kept", c, rv)
		}
	}
}

func TestPhysicalCompactNeedsCommittedCompaction(t *testing.T) {
	e := newEnv(t)
	e.put("a", "1")
	e.put("a", "2")
	if err := e.s.PhysicalCompact(e.eng, 2, 0, nil); err == nil {
		t.Fatal("physical compaction without a logical one")
	}
	if _, err := e.s.Compact(e.ob, 2); err != nil {
		t.Fatal(err)
	}
	if err := e.s.PhysicalCompact(e.eng, 2, 0, nil); err == nil {
		t.Fatal("physical compaction before the logical one was committed")
	}
	e.commit()
	if err := e.s.PhysicalCompact(e.eng, 2, 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.s.PhysicalCompact(e.eng, 2, 0, nil); err != nil {
		t.Fatal("second run:", err)
	}
}

// A key deleted and put again in one revision (reachable through a
// from-key delete, which etcd's duplicate check misses; etcd issue 22376
// loses such keys on compaction) keeps its new value through compactions
// at and after that revision, and a restart.
func TestDeleteAndRecreateInOneRevisionSurvivesCompaction(t *testing.T) {
	e := newEnv(t)
	e.put("b", "1") // 2
	if _, err := e.txn(&pb.TxnRequest{Success: []*pb.RequestOp{delOp("a", "\x00"), putOp("b", "2", 0)}}); err != nil {
		t.Fatal(err) // 3: delete b (sub 0), put b (sub 1)
	}
	want := kv("b", "2", 3, 3, 1)
	got, _ := eventStrings(t, e.s, e.eng, 3, "b", "")
	if !slices.Equal(got, []string{`DELETE "b"="" c0 m3 v0 l0`, `PUT "b"="2" c3 m3 v1 l0`}) {
		t.Fatalf("events %q", got)
	}
	for _, c := range []int64{3, 4} {
		if c == 4 {
			e.put("c", "") // 4
		}
		if _, err := e.compact(c); err != nil {
			t.Fatal(err)
		}
		if err := e.s.PhysicalCompact(e.eng, c, 1, nil); err != nil {
			t.Fatal(err)
		}
		s, err := Open(e.eng, Options{})
		if err != nil {
			t.Fatal(err)
		}
		e.s = s
		wantMsg(t, fmt.Sprintf("b after compaction at %d", c), e.get("b", 0), want)
		wantMsg(t, fmt.Sprintf("b@%d after compaction at %d", c, c), e.get("b", c), want)
		checkCompacted(t, e.eng, c)
	}
}

// PhysicalCompact pauses after every batch it commits, and a run a pause
// ends is finished by the next, with the result of an uninterrupted one.
func TestPhysicalCompactPauses(t *testing.T) {
	eng := openEngine(t, "memory")
	s, err := Open(eng, Options{})
	if err != nil {
		t.Fatal(err)
	}
	randomWrites(t, rand.New(rand.NewPCG(3, 4)), s, eng, 200)
	c := s.Rev() - 10
	before := snapshotReads(t, s, eng, c, s.Rev())
	ob := overlay.New(eng)
	if _, err := s.Compact(ob, c); err != nil {
		t.Fatal(err)
	}
	if err := commitBatch(eng, ob); err != nil {
		t.Fatal(err)
	}
	errStop := fmt.Errorf("stop")
	pauses := 0
	err = s.PhysicalCompact(eng, c, 4, func() error {
		pauses++
		if pauses == 3 {
			return errStop
		}
		return nil
	})
	if err != errStop || s.PhysicalRev() >= c {
		t.Fatalf("run ended by its third pause: %v, physical revision %d (compaction %d)", err, s.PhysicalRev(), c)
	}
	pauses = 0
	if err := s.PhysicalCompact(eng, c, 4, func() error { pauses++; return nil }); err != nil {
		t.Fatal(err)
	}
	if pauses < 3 || s.PhysicalRev() != c {
		t.Fatalf("second run: %d pauses, physical revision %d, want %d", pauses, s.PhysicalRev(), c)
	}
	checkCompacted(t, eng, c)
	after := snapshotReads(t, s, eng, c, s.Rev())
	for rev, want := range before {
		if !proto.Equal(after[rev], want) {
			t.Fatalf("range @%d after the interrupted compaction:\n%s\nwant\n%s", rev, text(after[rev]), text(want))
		}
	}
}
