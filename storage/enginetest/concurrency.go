package enginetest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/metcd/metcd/storage"
)

// Every batch of testBatchAtomicity keeps three invariants:
//   - all group keys hold the batch's generation number;
//   - the two counters sum to atomTotal;
//   - exactly one token key exists (each batch moves it).
const (
	atomGroup  = 16
	atomTotal  = 1000
	atomTokens = 32
)

func atomGroupKey(i int) []byte { return fmt.Appendf(nil, "atom/g/%02d", i) }
func atomTokenKey(i int) []byte { return fmt.Appendf(nil, "atom/t/%02d", i) }

var atomA, atomB = []byte("atom/c/a"), []byte("atom/c/b")

func encGen(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func decGen(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("generation value %q is not 8 bytes", b)
	}
	return binary.BigEndian.Uint64(b), nil
}

// testBatchAtomicity races readers against a writer whose batches keep
// invariants that any half-applied batch would break. Operations inside
// each batch are shuffled so that an engine applying them one by one is
// caught whatever order it uses.
func testBatchAtomicity(t *testing.T, f Factory) {
	e := open(t, f)
	batches := 1000
	if testing.Short() {
		batches = 200
	}
	commit(t, e, false, func(b storage.Batch) {
		for i := range atomGroup {
			b.Put(atomGroupKey(i), encGen(0))
		}
		b.Put(atomA, []byte(strconv.Itoa(atomTotal)))
		b.Put(atomB, []byte("0"))
		b.Put(atomTokenKey(0), nil)
	})

	var (
		stop    atomic.Bool
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	fail := func(err error) {
		errOnce.Do(func() { first = err })
		stop.Store(true)
	}
	reader := func(name string, check func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// At least one pass even if the writer is already done.
			for n := 0; n == 0 || !stop.Load(); n++ {
				if err := check(); err != nil {
					fail(fmt.Errorf("%s reader, pass %d: %w", name, n, err))
					return
				}
			}
		}()
	}

	reader("snapshot", func() error { return checkAtomSnapshot(e) })
	reader("get", func() error { return checkAtomGets(e) })
	reader("iterator", func() error { return checkAtomIterators(e) })

	rng := rand.New(rand.NewPCG(3, 5))
	token := 0
	for gen := 1; gen <= batches && !stop.Load(); gen++ {
		var ops []func(storage.Batch)
		for i := range atomGroup {
			ops = append(ops, func(b storage.Batch) { b.Put(atomGroupKey(i), encGen(uint64(gen))) })
		}
		a := rng.IntN(atomTotal + 1)
		ops = append(ops,
			func(b storage.Batch) { b.Put(atomA, []byte(strconv.Itoa(a))) },
			func(b storage.Batch) { b.Put(atomB, []byte(strconv.Itoa(atomTotal-a))) })
		old, next := token, (token+1+rng.IntN(atomTokens-1))%atomTokens
		token = next
		ops = append(ops,
			func(b storage.Batch) { b.Delete(atomTokenKey(old)) },
			func(b storage.Batch) { b.Put(atomTokenKey(next), nil) })
		rng.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
		err := tryCommit(e, false, func(b storage.Batch) {
			for _, op := range ops {
				op(b)
			}
		})
		if err != nil {
			fail(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}

// checkAtomSnapshot checks all three invariants in one consistent view.
func checkAtomSnapshot(e storage.Engine) (err error) {
	s, err := e.NewSnapshot()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, s.Close()) }()
	var sum int
	for _, k := range [][]byte{atomA, atomB} {
		v, err := s.Get(k)
		if err != nil {
			return fmt.Errorf("Get(%q): %w", k, err)
		}
		n, err := strconv.Atoi(string(v))
		if err != nil {
			return fmt.Errorf("counter %q: %w", k, err)
		}
		sum += n
	}
	if sum != atomTotal {
		return fmt.Errorf("counters sum to %d, want %d: half-applied batch", sum, atomTotal)
	}
	tokens, err := scan(s, prefixRange("atom/t/"))
	if err != nil {
		return err
	}
	if len(tokens) != 1 {
		return fmt.Errorf("%d tokens %v, want 1: half-applied batch", len(tokens), tokens)
	}
	group, err := scan(s, prefixRange("atom/g/"))
	if err != nil {
		return err
	}
	if len(group) != atomGroup {
		return fmt.Errorf("%d group keys, want %d", len(group), atomGroup)
	}
	for _, p := range group {
		if string(p.v) != string(group[0].v) {
			return fmt.Errorf("group keys disagree in one snapshot: %v vs %v", group[0], p)
		}
		g, err := s.Get(p.k)
		if err != nil || string(g) != string(p.v) {
			return fmt.Errorf("snapshot Get(%q) = %q, %v; its iterator said %q", p.k, g, err, p.v)
		}
	}
	return nil
}

// checkAtomGets reads the group with separate Gets. Without a snapshot the
// values may advance between reads, but with atomic batches a key read
// later can never hold an older generation than one read earlier, in
// either reading order.
func checkAtomGets(e storage.Engine) error {
	for _, rev := range []bool{false, true} {
		var last uint64
		for n := range atomGroup {
			i := n
			if rev {
				i = atomGroup - 1 - n
			}
			v, err := e.Get(atomGroupKey(i))
			if err != nil {
				return fmt.Errorf("Get(%q): %w", atomGroupKey(i), err)
			}
			g, err := decGen(v)
			if err != nil {
				return err
			}
			if g < last {
				return fmt.Errorf("read %q at generation %d after another key at %d: half-applied batch", atomGroupKey(i), g, last)
			}
			last = g
		}
	}
	return nil
}

// checkAtomIterators applies the same ordering argument to engine
// iterators, which the contract does not require to be point-in-time.
func checkAtomIterators(e storage.Engine) error {
	for _, rev := range []bool{false, true} {
		opts := prefixRange("atom/g/")
		opts.Reverse = rev
		group, err := scan(e, opts)
		if err != nil {
			return err
		}
		if len(group) != atomGroup {
			return fmt.Errorf("iterator saw %d group keys, want %d", len(group), atomGroup)
		}
		var last uint64
		for n, p := range group {
			if n > 0 && (bytes.Compare(group[n-1].k, p.k) >= 0) != rev {
				return fmt.Errorf("iterator %s yielded %q then %q", fmtOpts(opts), group[n-1].k, p.k)
			}
			g, err := decGen(p.v)
			if err != nil {
				return err
			}
			if g < last {
				return fmt.Errorf("iterator %s saw %v after generation %d: half-applied batch", fmtOpts(opts), p, last)
			}
			last = g
		}
	}
	return nil
}

func testSnapshot(t *testing.T, f Factory) {
	t.Run("stable-under-writes", func(t *testing.T) { testSnapshotStable(t, f) })
	t.Run("history", func(t *testing.T) { testSnapshotHistory(t, f) })
}

// testSnapshotStable checks a snapshot from another goroutine while the
// writer overwrites, deletes and adds keys, then checks that a newer
// snapshot and the engine see the final state.
func testSnapshotStable(t *testing.T, f Factory) {
	e := open(t, f)
	const n = 300
	rounds := 20
	if testing.Short() {
		rounds = 5
	}
	key := func(i int) string { return fmt.Sprintf("snap/%04d", i) }
	m := model{}
	commit(t, e, false, func(b storage.Batch) {
		for i := range n {
			m[key(i)] = fmt.Appendf(nil, "v0/%d", i)
			b.Put([]byte(key(i)), m[key(i)])
		}
	})
	opts := prefixRange("snap/")
	s, err := e.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	before := m.clone()

	var stop atomic.Bool
	readErr := make(chan error, 1)
	go func() {
		for pass := 0; pass == 0 || !stop.Load(); pass++ {
			if err := checkModel(s, before, opts); err != nil {
				readErr <- fmt.Errorf("pass %d during writes: %w", pass, err)
				return
			}
		}
		readErr <- nil
	}()
	for r := 1; r <= rounds; r++ {
		commit(t, e, r%5 == 0, func(b storage.Batch) {
			for i := range n {
				k := key(i)
				if i%3 == r%3 {
					delete(m, k)
					b.Delete([]byte(k))
				} else {
					m[k] = fmt.Appendf(nil, "v%d/%d", r, i)
					b.Put([]byte(k), m[k])
				}
			}
			k := key(n + r)
			m[k] = []byte("added")
			b.Put([]byte(k), m[k])
		})
	}
	stop.Store(true)
	if err := <-readErr; err != nil {
		t.Fatal(err)
	}
	if err := checkModel(s, before, opts); err != nil {
		t.Fatalf("old snapshot after writes: %v", err)
	}
	if err := checkModel(e, m, opts); err != nil {
		t.Fatalf("engine after writes: %v", err)
	}
	s2, err := e.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := checkModel(s2, m, opts); err != nil {
		t.Fatalf("new snapshot: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	_, err = s.Get([]byte(key(0)))
	wantClosed(t, "Get on a closed snapshot", err)
}

// testSnapshotHistory keeps a snapshot after each of several commits open
// at once; each must keep seeing its own point in time.
func testSnapshotHistory(t *testing.T, f Factory) {
	e := open(t, f)
	const n = 10
	snaps := make([]storage.Snapshot, n)
	models := make([]model, n)
	m := model{}
	for i := range n {
		commit(t, e, false, func(b storage.Batch) {
			m["hist/x"] = fmt.Appendf(nil, "%d", i)
			b.Put([]byte("hist/x"), m["hist/x"])
			k := fmt.Sprintf("hist/%02d", i)
			m[k] = []byte(k)
			b.Put([]byte(k), m[k])
			if i > 0 {
				old := fmt.Sprintf("hist/%02d", i-1)
				delete(m, old)
				b.Delete([]byte(old))
			}
		})
		s, err := e.NewSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		snaps[i], models[i] = s, m.clone()
	}
	for i, s := range snaps {
		if err := checkModel(s, models[i], prefixRange("hist/")); err != nil {
			t.Errorf("snapshot %d: %v", i, err)
		}
	}
}
