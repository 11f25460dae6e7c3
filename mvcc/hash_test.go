package mvcc

import (
	"fmt"
	"math/rand"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/memory"
	"github.com/metcd/metcd/storage/overlay"
)

type hashOp struct {
	del      bool
	key, val string
}

// hashStore is a Store committing its write txns in batches of random
// size.
type hashStore struct {
	t       *testing.T
	eng     storage.Engine
	s       *Store
	ob      *overlay.Batch
	rnd     *rand.Rand
	pending int
}

func newHashStore(t *testing.T, seed int64) *hashStore {
	eng := memory.New()
	s, err := Open(eng, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &hashStore{t: t, eng: eng, s: s, ob: overlay.New(eng), rnd: rand.New(rand.NewSource(seed))}
}

func (h *hashStore) write(ops []hashOp) {
	w := h.s.Write(h.ob)
	for _, o := range ops {
		var err error
		if o.del {
			_, err = w.DeleteRange(&pb.DeleteRangeRequest{Key: []byte(o.key), RangeEnd: []byte(o.key + "\xff")})
		} else {
			_, err = w.Put(&pb.PutRequest{Key: []byte(o.key), Value: []byte(o.val)})
		}
		if err != nil {
			h.t.Fatal(err)
		}
	}
	w.End()
	h.pending++
	if h.rnd.Intn(4) == 0 {
		h.commit()
	}
}

func (h *hashStore) commit() {
	if err := commitBatch(h.eng, h.ob); err != nil {
		h.t.Fatal(err)
	}
	h.pending = 0
}

func (h *hashStore) compact(rev int64, physical bool) {
	h.commit()
	if _, err := h.s.Compact(h.ob, rev); err != nil {
		h.t.Fatal(err)
	}
	h.commit()
	if physical {
		if err := h.s.PhysicalCompact(h.eng, rev, 5, nil); err != nil {
			h.t.Fatal(err)
		}
	}
}

func (h *hashStore) hash(rev int64) uint32 {
	h.t.Helper()
	snap, err := h.eng.NewSnapshot()
	if err != nil {
		h.t.Fatal(err)
	}
	defer snap.Close()
	sum, hr, c, err := h.s.HashKV(snap, rev)
	if err != nil {
		h.t.Fatalf("HashKV(%d): %v", rev, err)
	}
	if rev != 0 && hr != rev || c != h.s.CompactRev() {
		h.t.Fatalf("HashKV(%d): revision %d, compacted %d", rev, hr, c)
	}
	// The live engine gives the same.
	if sum2, _, _, err := h.s.HashKV(h.eng, rev); err != nil || sum2 != sum {
		h.t.Fatalf("HashKV(%d) on the engine: %x %v, snapshot %x", rev, sum2, err, sum)
	}
	return sum
}

// TestHashKV feeds the same writes to stores with different batch
// boundaries and physical compaction progress: their hashes agree at every
// revision; a store with one different value disagrees from that revision
// on.
func TestHashKV(t *testing.T) {
	rnd := rand.New(rand.NewSource(3))
	var txns [][]hashOp
	for i := 0; i < 200; i++ {
		var ops []hashOp
		for n := rnd.Intn(3) + 1; n > 0; n-- {
			k := fmt.Sprintf("k%d", rnd.Intn(12))
			ops = append(ops, hashOp{del: rnd.Intn(5) == 0, key: k, val: fmt.Sprint(i)})
		}
		txns = append(txns, ops)
	}
	a, b, d := newHashStore(t, 1), newHashStore(t, 2), newHashStore(t, 3)
	// d writes another value in txns 60 (before the first compaction) and
	// 150 (after the last one).
	var diffRev, diffRev2 int64
	for i, ops := range txns {
		a.write(ops)
		b.write(ops)
		if i == 60 || i == 150 {
			ops = append([]hashOp(nil), ops...)
			ops[0] = hashOp{key: ops[0].key, val: "other"}
			d.write(ops)
			if i == 60 {
				diffRev = d.s.Rev()
			} else {
				diffRev2 = d.s.Rev()
			}
		} else {
			d.write(ops)
		}
		if i == 100 {
			a.commit()
			b.commit()
			d.commit()
			for rev := int64(1); rev <= a.s.Rev(); rev++ {
				ha, hb, hd := a.hash(rev), b.hash(rev), d.hash(rev)
				if ha != hb {
					t.Fatalf("rev %d: hashes %x and %x", rev, ha, hb)
				}
				if (rev < diffRev) != (ha == hd) {
					t.Fatalf("rev %d (data differs from %d): hashes %x and %x", rev, diffRev, ha, hd)
				}
			}
			c := a.s.Rev() - 30
			a.compact(c, true)
			b.compact(c, false)
			d.compact(c, true)
		}
	}
	a.commit()
	b.commit()
	d.commit()
	if a.s.Rev() != b.s.Rev() || a.s.Rev() != d.s.Rev() {
		t.Fatalf("revisions %d %d %d", a.s.Rev(), b.s.Rev(), d.s.Rev())
	}
	c := a.s.CompactRev()
	check := func() {
		t.Helper()
		for rev := c; rev <= a.s.Rev(); rev++ {
			ha, hb, hd := a.hash(rev), b.hash(rev), d.hash(rev)
			if ha != hb {
				t.Fatalf("rev %d (compacted %d): hashes %x and %x", rev, c, ha, hb)
			}
			if rev >= diffRev2 && ha == hd {
				t.Fatalf("rev %d (data differs from %d): hash %x despite different data", rev, diffRev2, ha)
			}
		}
		if a.hash(0) != a.hash(a.s.Rev()) {
			t.Fatal("HashKV(0) is not the current revision's")
		}
	}
	check()
	// b's physical compaction changes nothing; nor does a second
	// compaction with the physical one still to run on a.
	if err := b.s.PhysicalCompact(b.eng, c, 3, nil); err != nil {
		t.Fatal(err)
	}
	check()
	c += 40
	if c >= diffRev2 {
		t.Fatalf("second compaction %d not below the second difference %d", c, diffRev2)
	}
	a.compact(c, false)
	b.compact(c, true)
	d.compact(c, true)
	check()

	if _, _, _, err := a.s.HashKV(a.eng, a.s.Rev()+1); err != ErrFutureRev {
		t.Fatalf("future revision: %v", err)
	}
	if _, _, _, err := a.s.HashKV(a.eng, c-1); err != ErrCompacted {
		t.Fatalf("compacted revision: %v", err)
	}
	// A negative revision hashes nothing, as etcd's (which answers, not
	// ErrCompacted, after a compaction).
	if h, rev, _, err := a.s.HashKV(a.eng, -1); err != nil || h != 0 || rev != -1 {
		t.Fatalf("revision -1: hash %x rev %d err %v", h, rev, err)
	}
	// Empty store: hash of nothing.
	e := newHashStore(t, 4)
	if e.hash(0) != 0 {
		t.Fatalf("empty store hash %x", e.hash(0))
	}
}
