package mvcc

import (
	"fmt"
	"sync"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/metcd/metcd/storage/engines"
	"github.com/metcd/metcd/storage/overlay"
)

// TestLiveEngineReadsAreConsistent reads the live engine while another
// goroutine commits: every answer must be the state of the revision in its
// header. Each write txn puts x and y together, so both carry the header
// revision as mod_revision, at the current revision and at past ones.
func TestLiveEngineReadsAreConsistent(t *testing.T) {
	for _, name := range engines.Names() {
		t.Run(name, func(t *testing.T) {
			open, _ := engines.Lookup(name)
			eng, err := open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer eng.Close()
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
					if err := commitBatch(eng, ob); err != nil {
						t.Error(err)
						return
					}
					if i%50 == 49 {
						// Compact behind the readers now and then.
						if _, err := s.Compact(ob, s.Rev()-20); err != nil {
							t.Error(err)
							return
						}
						if err := commitBatch(eng, ob); err != nil {
							t.Error(err)
							return
						}
						if err := s.PhysicalCompact(eng, s.CompactRev(), 2); err != nil {
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
				resp, err := s.Range(eng, &pb.RangeRequest{Key: []byte("x"), RangeEnd: []byte("z"), Revision: rev})
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
		})
	}
}
