package mvcc

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/engines"
	"github.com/metcd/metcd/storage/overlay"
)

// TestLiveEngineReadsAreConsistent reads the live engine while another
// goroutine commits: every answer must be the state of the revision in its
// header. Each write txn puts x and y together, so both carry the header
// revision as mod_revision, at the current revision and at past ones. It
// reads with Range, and with RangeCommitted (the writer commits through
// Store.Commit).
func TestLiveEngineReadsAreConsistent(t *testing.T) {
	for _, name := range engines.Names() {
		t.Run(name+"/Range", func(t *testing.T) { testLiveReads(t, name, (*Store).Range) })
		t.Run(name+"/RangeCommitted", func(t *testing.T) { testLiveReads(t, name, (*Store).RangeCommitted) })
	}
}

func testLiveReads(t *testing.T, name string, rangeFn func(*Store, storage.Reader, *pb.RangeRequest) (*pb.RangeResponse, error)) {
	eng := openEngine(t, name)
	s, err := Open(eng, Options{})
	if err != nil {
		t.Fatal(err)
	}
	writes := 300
	if raceEnabled {
		writes = 100
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		ob := overlay.New(eng)
		for i := 0; i < writes && !t.Failed(); i++ {
			v := fmt.Sprint(i)
			_, err := s.Txn(ob, &pb.TxnRequest{Success: []*pb.RequestOp{putOp("x", v, 0), putOp("y", v, 0)}})
			if err != nil {
				t.Error(err)
				return
			}
			if err := s.Commit(func() error { return commitBatch(eng, ob) }); err != nil {
				t.Error(err)
				return
			}
			if i%50 == 49 {
				// Compact behind the readers now and then.
				if _, err := s.Compact(ob, s.Rev()-20); err != nil {
					t.Error(err)
					return
				}
				if err := s.Commit(func() error { return commitBatch(eng, ob) }); err != nil {
					t.Error(err)
					return
				}
				if err := s.PhysicalCompact(eng, s.CompactRev(), 2, nil); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	reads := 0
	defer wg.Wait() // before the engine closes, even on failure
	for {
		select {
		case <-done:
			t.Logf("%d reads during the writes", reads)
			return
		default:
		}
		rev := int64(0)
		if reads%2 == 1 {
			rev = max(s.Rev()-10, 1)
		}
		resp, err := rangeFn(s, eng, &pb.RangeRequest{Key: []byte("x"), RangeEnd: []byte("z"), Revision: rev})
		if err == ErrCompacted {
			continue
		}
		if err != nil {
			t.Error(err)
			return
		}
		reads++
		want := resp.Header.Revision
		if rev > 0 {
			want = rev
		}
		if want == 1 {
			continue
		}
		if len(resp.Kvs) != 2 || resp.Kvs[0].ModRevision != want || resp.Kvs[1].ModRevision != want {
			t.Errorf("read at %d (header %d): %s", rev, resp.Header.Revision, text(resp))
			return
		}
	}
}

// metaCounter counts the reads of the revision meta keys.
type metaCounter struct {
	storage.Reader
	n int
}

func (c *metaCounter) Get(key []byte) ([]byte, error) {
	if bytes.Equal(key, metaRev) || bytes.Equal(key, metaCompact) {
		c.n++
	}
	return c.Reader.Get(key)
}

// TestRangeCommitted checks when RangeCommitted takes the revision from
// the Store instead of the engine: at the current revision after a
// successful Commit, not for a past revision, and not after a failed
// Commit, when the engine's answer is the only right one.
func TestRangeCommitted(t *testing.T) {
	e := newEnv(t)
	e.put("a", "1")
	e.put("b", "2") // rev 3
	cr := &metaCounter{Reader: e.eng}
	read := func(what string, rev int64, wantRev int64, wantMeta bool) {
		t.Helper()
		cr.n = 0
		resp, err := e.s.RangeCommitted(cr, &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("c"), Revision: rev})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if resp.Header.Revision != wantRev {
			t.Fatalf("%s: header revision %d, want %d", what, resp.Header.Revision, wantRev)
		}
		if got := cr.n > 0; got != wantMeta {
			t.Fatalf("%s: %d reads of the revision keys, want them: %v", what, cr.n, wantMeta)
		}
	}
	read("current", 0, 3, false)
	read("current, named", 3, 3, false)
	read("past", 2, 3, true)

	// A failed commit: the Store counted revision 4, the engine has 3.
	w := e.s.Write(e.ob)
	if _, err := w.Put(&pb.PutRequest{Key: []byte("a"), Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	w.End()
	failed := errors.New("disk on fire")
	if err := e.s.Commit(func() error { return failed }); !errors.Is(err, failed) {
		t.Fatalf("Commit: %v, want the commit's error", err)
	}
	read("after a failed commit", 0, 3, true)
	if got := e.get("a", 0); string(got.Value) != "1" {
		t.Fatalf("after a failed commit a = %q, want 1", got.Value)
	}

	// The batch committed at last: back to the Store's revision.
	e.commit()
	read("after the next commit", 0, 4, false)
	if got := e.get("a", 0); string(got.Value) != "x" {
		t.Fatalf("after the next commit a = %q, want x", got.Value)
	}
}
