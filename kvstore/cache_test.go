package kvstore

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/memory"
	"github.com/metcd/metcd/storage/overlay"
)

// countingEngine counts the point reads that reach the engine.
type countingEngine struct {
	storage.Engine
	gets int
}

func (e *countingEngine) Get(key []byte) ([]byte, error) {
	e.gets++
	return e.Engine.Get(key)
}

func hot(key []byte) bool { return bytes.HasPrefix(key, []byte("h")) }

func txnGet(t *testing.T, txn *Txn, key string) (string, bool) {
	t.Helper()
	v, err := txn.Batch().Get([]byte(key))
	if errors.Is(err, storage.ErrNotFound) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(v), true
}

func TestReadCache(t *testing.T) {
	eng := &countingEngine{Engine: memory.New()}
	s, err := Open(eng)
	if err != nil {
		t.Fatal(err)
	}
	s.SetReadCache(ReadCache{Keep: hot, Entries: 4})

	txn := s.NewTxn()
	if _, ok := txnGet(t, txn, "h1"); ok {
		t.Fatal("h1 found in an empty store")
	}
	txn.Batch().Put([]byte("h1"), []byte("a"))
	txn.Batch().Put([]byte("x"), []byte("1"))
	if err := txn.Commit(1, false); err != nil {
		t.Fatal(err)
	}

	eng.gets = 0
	txn = s.NewTxn()
	if v, ok := txnGet(t, txn, "h1"); !ok || v != "a" {
		t.Fatalf("h1 = %q, %v; want a", v, ok)
	}
	if eng.gets != 0 {
		t.Fatalf("a committed hot key reached the engine (%d gets)", eng.gets)
	}
	if v, ok := txnGet(t, txn, "x"); !ok || v != "1" || eng.gets != 1 {
		t.Fatalf("x = %q, %v after %d engine gets; want 1 read from the engine", v, ok, eng.gets)
	}
	txn.Batch().Delete([]byte("h1"))
	if err := txn.Commit(2, false); err != nil {
		t.Fatal(err)
	}

	eng.gets = 0
	txn = s.NewTxn()
	if _, ok := txnGet(t, txn, "h1"); ok || eng.gets != 0 {
		t.Fatalf("deleted h1 found=%v after %d engine gets; want absent from the cache", ok, eng.gets)
	}
	// More hot keys than the cache holds: every value stays right.
	for i := 0; i < 20; i++ {
		txn.Batch().Put([]byte(fmt.Sprintf("h%02d", i)), []byte{byte(i)})
	}
	if err := txn.Commit(3, false); err != nil {
		t.Fatal(err)
	}
	if n := s.cache.len(); n > 4 {
		t.Fatalf("cache holds %d keys, limit 4", n)
	}
	txn = s.NewTxn()
	for i := 0; i < 20; i++ {
		if v, ok := txnGet(t, txn, fmt.Sprintf("h%02d", i)); !ok || v != string([]byte{byte(i)}) {
			t.Fatalf("h%02d = %q, %v; want %q", i, v, ok, []byte{byte(i)})
		}
	}
	txn.Abort()

	// A restored engine replaces what the cache knew.
	other, err := Open(memory.New())
	if err != nil {
		t.Fatal(err)
	}
	txn = other.NewTxn()
	txn.Batch().Put([]byte("h05"), []byte("restored"))
	if err := txn.Commit(9, false); err != nil {
		t.Fatal(err)
	}
	if _, err := restore(t, s, bytes.NewReader(snapshotBytes(t, other)), memory.New()); err != nil {
		t.Fatal(err)
	}
	if n := s.cache.len(); n != 0 {
		t.Fatalf("cache holds %d keys of the replaced engine", n)
	}
	txn = s.NewTxn()
	if v, ok := txnGet(t, txn, "h05"); !ok || v != "restored" {
		t.Fatalf("after restore h05 = %q, %v; want restored", v, ok)
	}
	if _, ok := txnGet(t, txn, "h06"); ok {
		t.Fatal("after restore h06 still found: the cache outlived the engine")
	}
}

// TestReadCacheTrim checks a cache that keeps trimmed values: GetTrimmed
// is served from the cache, Get of a trimmed entry goes to the engine for
// the whole value, pending writes answer whole, and a value Trim declines
// is kept whole.
func TestReadCacheTrim(t *testing.T) {
	eng := &countingEngine{Engine: memory.New()}
	// Trim keeps a value's first byte, and declines values starting '!'.
	trim := func(key, v []byte) []byte {
		if len(v) == 0 || v[0] == '!' {
			return nil
		}
		return []byte{v[0]}
	}
	open := func() *Store {
		s, err := Open(eng)
		if err != nil {
			t.Fatal(err)
		}
		s.SetReadCache(ReadCache{Keep: hot, Trim: trim})
		return s
	}
	s := open()
	txn := s.NewTxn()
	txn.Batch().Put([]byte("h1"), []byte("abc"))
	txn.Batch().Put([]byte("h2"), []byte("!whole"))
	if err := txn.Commit(1, false); err != nil {
		t.Fatal(err)
	}

	trimmed := func(txn *Txn, key, want string, wantGets int) {
		t.Helper()
		v, err := txn.Batch().GetTrimmed([]byte(key))
		if err != nil || string(v) != want || eng.gets != wantGets {
			t.Fatalf("GetTrimmed(%s) = %q, %v after %d engine gets; want %q after %d", key, v, err, eng.gets, want, wantGets)
		}
	}
	whole := func(txn *Txn, key, want string, wantGets int) {
		t.Helper()
		if v, ok := txnGet(t, txn, key); !ok || v != want || eng.gets != wantGets {
			t.Fatalf("Get(%s) = %q, %v after %d engine gets; want %q after %d", key, v, ok, eng.gets, want, wantGets)
		}
	}
	eng.gets = 0
	txn = s.NewTxn()
	trimmed(txn, "h1", "a", 0)
	whole(txn, "h1", "abc", 1) // the whole value is only in the engine
	trimmed(txn, "h1", "a", 1) // and the entry stays trimmed
	whole(txn, "h2", "!whole", 1)
	trimmed(txn, "h2", "!whole", 1)
	txn.Batch().Put([]byte("h1"), []byte("pending"))
	trimmed(txn, "h1", "pending", 1)
	txn.Batch().Delete([]byte("h2"))
	if _, err := txn.Batch().GetTrimmed([]byte("h2")); !errors.Is(err, storage.ErrNotFound) || eng.gets != 1 {
		t.Fatalf("GetTrimmed of a pending delete: %v after %d engine gets", err, eng.gets)
	}
	if err := txn.Commit(2, false); err != nil {
		t.Fatal(err)
	}
	eng.gets = 0
	txn = s.NewTxn()
	trimmed(txn, "h1", "p", 0)
	if _, err := txn.Batch().GetTrimmed([]byte("h2")); !errors.Is(err, storage.ErrNotFound) || eng.gets != 0 {
		t.Fatalf("GetTrimmed of a deleted key: %v after %d engine gets; want not found from the cache", err, eng.gets)
	}
	txn.Abort()

	// A cold cache: the first read goes to the engine and may answer whole.
	s = open()
	eng.gets = 0
	txn = s.NewTxn()
	trimmed(txn, "h1", "pending", 1)
	trimmed(txn, "h1", "p", 1)
	whole(txn, "h1", "pending", 2)
	txn.Abort()
}

// TestReadCacheArena drives the cache's arena directly with random sets,
// and checks every get against a plain map of what was set last: values
// rewritten in place, grown out of their room, shrunk, deleted (cached as
// not found), evicted, moved by compactions, and keys whose hashes
// collide. An entry may be missing (evicted, or displaced by a colliding
// key) but never wrong. A cache that starts complete (ReadCache.Load)
// must hold every key set as found for as long as it says it is.
func TestReadCacheArena(t *testing.T) {
	colliding := func(_ maphash.Seed, k []byte) uint64 { return uint64(k[len(k)-1] % 8) }
	for _, tc := range []struct {
		name     string
		hash     func(maphash.Seed, []byte) uint64
		max      int
		complete bool
	}{
		{"maphash", maphash.Bytes, 64, false},
		{"colliding", colliding, 64, false},
		{"small", maphash.Bytes, 5, false},
		{"complete", maphash.Bytes, 128, true},
		{"complete colliding", colliding, 128, true},
		{"complete small", maphash.Bytes, 64, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			trim := func(key, v []byte) []byte {
				if len(v) > 0 && v[0] == 't' {
					return append([]byte(nil), v[:len(v)/2]...)
				}
				return nil
			}
			c := newReadCache(ReadCache{Keep: hot, Trim: trim, Entries: tc.max})
			c.hash = tc.hash
			c.minCompact = 0         // compact as soon as half the arena is dead
			c.complete = tc.complete // an empty engine: nothing to load
			completeOps := 0
			type want struct {
				v              string
				found, trimmed bool
			}
			model := map[string]want{}
			rng := rand.New(rand.NewPCG(7, 7))
			compactions := 0
			for i := 0; i < 20000; i++ {
				if c.complete {
					completeOps++
				}
				key := fmt.Sprintf("h%03d", rng.IntN(100))
				switch rng.IntN(10) {
				case 0:
					c.set([]byte(key), nil, false)
					model[key] = want{}
				case 1, 2, 3, 4:
					// Lengths that mostly fit the entry's room, sometimes not.
					v := make([]byte, rng.IntN(40))
					for j := range v {
						v[j] = byte('a' + rng.IntN(26))
					}
					before := len(c.arena)
					c.set([]byte(key), v, true)
					if len(c.arena) < before {
						compactions++
					}
					w := want{v: string(v), found: true}
					if tv := trim([]byte(key), v); tv != nil {
						w = want{v: string(tv), found: true, trimmed: true}
					}
					model[key] = w
				default:
					cv, ok := c.get([]byte(key))
					if !ok {
						if c.complete && model[key].found {
							t.Fatalf("op %d: %s missing from a complete cache", i, key)
						}
						continue
					}
					w, known := model[key]
					if !known {
						t.Fatalf("op %d: %s cached but never set", i, key)
					}
					if cv.found != w.found || cv.trimmed != w.trimmed || (cv.found && string(cv.v) != w.v) {
						t.Fatalf("op %d: %s = %q found=%v trimmed=%v; want %q found=%v trimmed=%v",
							i, key, cv.v, cv.found, cv.trimmed, w.v, w.found, w.trimmed)
					}
				}
				if c.len() > tc.max {
					t.Fatalf("op %d: %d entries, limit %d", i, c.len(), tc.max)
				}
				if c.dead > len(c.arena) {
					t.Fatalf("op %d: %d dead bytes in an arena of %d", i, c.dead, len(c.arena))
				}
			}
			switch {
			case tc.name == "complete" && completeOps != 20000:
				t.Fatalf("complete for %d of 20000 operations; 100 keys fit in 128 entries", completeOps)
			case tc.name != "complete" && c.complete:
				t.Fatal("still complete after evictions or displaced keys")
			case tc.complete && completeOps == 0:
				t.Fatal("never complete; the test did not exercise it")
			}
			if compactions == 0 {
				t.Fatal("no compaction happened; the test did not exercise it")
			}
			// Everything still cached reads back as last set.
			hits := 0
			for key, w := range model {
				if cv, ok := c.get([]byte(key)); ok {
					hits++
					if cv.found != w.found || (cv.found && string(cv.v) != w.v) {
						t.Fatalf("at the end %s = %q, %v; want %q, %v", key, cv.v, cv.found, w.v, w.found)
					}
				}
			}
			if hits == 0 {
				t.Fatal("nothing cached at the end")
			}
			c.clear()
			if _, ok := c.get([]byte("h001")); ok || c.len() != 0 {
				t.Fatalf("after clear: %d entries", c.len())
			}
		})
	}
}

// TestReadCacheNoPointers: the cache's index and arena hold no pointers,
// which is what keeps the garbage collector out of them.
func TestReadCacheNoPointers(t *testing.T) {
	c := newReadCache(ReadCache{Keep: hot})
	for _, typ := range []reflect.Type{reflect.TypeOf(c.idx).Key(), reflect.TypeOf(c.idx).Elem(), reflect.TypeOf(c.arena).Elem()} {
		if typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.String || typ.Kind() == reflect.Map || typ.Kind() == reflect.Interface {
			t.Errorf("cache holds %v, a type with pointers", typ)
		}
	}
}

// loadHot is a ReadCache.Load for the keys hot selects. If gate is not
// nil it waits for it to be closed before reading.
func loadHot(gate chan struct{}) func(r storage.Reader, max int, add func(key, value []byte) bool) (bool, error) {
	return func(r storage.Reader, max int, add func(key, value []byte) bool) (bool, error) {
		if gate != nil {
			<-gate
		}
		it, err := r.NewIterator(storage.IterOptions{Lower: []byte("h"), Upper: []byte("i")})
		if err != nil {
			return false, err
		}
		defer it.Close()
		n := 0
		for it.Next() {
			if n++; n > max {
				return false, nil
			}
			if !add(it.Key(), it.Value()) {
				return false, nil
			}
		}
		return true, it.Err()
	}
}

// awaitFill waits for the running fill, if any, to end, and lets the
// store adopt it as its next transaction would.
func (s *Store) awaitFill() {
	if f := s.fill.Load(); f != nil {
		<-f.done
	}
	s.NewTxn().Abort()
}

// fillReport records what ReadCache.Filled was told.
type fillReport struct {
	calls    int
	entries  int
	complete bool
	err      error
}

func (r *fillReport) filled(entries int, complete bool, _ time.Duration, err error) {
	r.calls++
	r.entries, r.complete, r.err = entries, complete, err
}

func commitTxn(t *testing.T, s *Store, applied uint64, fn func(b *overlay.Batch)) {
	t.Helper()
	txn := s.NewTxn()
	fn(txn.Batch())
	if err := txn.Commit(applied, false); err != nil {
		t.Fatal(err)
	}
}

// TestReadCacheComplete checks a cache that holds every hot key
// (ReadCache.Load): reads of absent hot keys cost no engine lookup and
// answer not found, deletes take entries out, and the first eviction, a
// fill that does not fit and a restore end or restart that state.
func TestReadCacheComplete(t *testing.T) {
	eng := &countingEngine{Engine: memory.New()}
	s, err := Open(eng)
	if err != nil {
		t.Fatal(err)
	}
	commitTxn(t, s, 1, func(b *overlay.Batch) {
		b.Put([]byte("h1"), []byte("a"))
		b.Put([]byte("h2"), []byte("b"))
		b.Put([]byte("x"), []byte("1"))
	})
	var rep fillReport
	s.SetReadCache(ReadCache{Keep: hot, Load: loadHot(nil), Filled: rep.filled, Entries: 4})
	s.awaitFill()
	if n, all := s.ReadCacheState(); n != 2 || !all || rep != (fillReport{calls: 1, entries: 2, complete: true}) {
		t.Fatalf("after the fill: %d entries, all keys %v, reported %+v; want 2, true, reported once", n, all, rep)
	}
	eng.gets = 0
	txn := s.NewTxn()
	if v, ok := txnGet(t, txn, "h1"); !ok || v != "a" {
		t.Fatalf("h1 = %q, %v; want a", v, ok)
	}
	for _, k := range []string{"h3", "h9", "h"} {
		if _, ok := txnGet(t, txn, k); ok {
			t.Fatalf("%s found; it was never written", k)
		}
	}
	if eng.gets != 0 {
		t.Fatalf("%d engine gets for hot keys of a complete cache; want 0", eng.gets)
	}
	if _, ok := txnGet(t, txn, "x"); !ok || eng.gets != 1 {
		t.Fatalf("x found=%v after %d engine gets; want it read from the engine", ok, eng.gets)
	}
	txn.Abort()

	// A delete takes the entry out; the key stays absent without a lookup.
	commitTxn(t, s, 2, func(b *overlay.Batch) {
		b.Delete([]byte("h1"))
		b.Put([]byte("h3"), []byte("c"))
	})
	if n, all := s.ReadCacheState(); n != 2 || !all {
		t.Fatalf("after a delete and a put: %d entries, all keys %v; want 2, true", n, all)
	}
	eng.gets = 0
	txn = s.NewTxn()
	if _, ok := txnGet(t, txn, "h1"); ok {
		t.Fatal("deleted h1 found")
	}
	if v, ok := txnGet(t, txn, "h3"); !ok || v != "c" || eng.gets != 0 {
		t.Fatalf("h3 = %q, %v after %d engine gets; want c from the cache", v, ok, eng.gets)
	}
	txn.Abort()

	// More keys than the cache holds: the first eviction ends the state,
	// and absent keys are looked up again.
	commitTxn(t, s, 3, func(b *overlay.Batch) {
		for i := 4; i < 8; i++ {
			b.Put([]byte(fmt.Sprintf("h%d", i)), []byte{byte('0' + i)})
		}
	})
	if _, all := s.ReadCacheState(); all {
		t.Fatal("still complete after six keys in a cache of four")
	}
	eng.gets = 0
	txn = s.NewTxn()
	if _, ok := txnGet(t, txn, "h9"); ok || eng.gets != 1 {
		t.Fatalf("h9 found=%v after %d engine gets; want absent, read from the engine", ok, eng.gets)
	}
	for _, k := range []string{"h2", "h3", "h4", "h5", "h6", "h7"} {
		if _, ok := txnGet(t, txn, k); !ok {
			t.Fatalf("%s not found after evictions", k)
		}
	}
	txn.Abort()

	// A fill that does not fit leaves the cache to fill as it reads.
	big, err := Open(eng)
	if err != nil {
		t.Fatal(err)
	}
	rep = fillReport{}
	big.SetReadCache(ReadCache{Keep: hot, Load: loadHot(nil), Filled: rep.filled, Entries: 5})
	big.awaitFill()
	if n, all := big.ReadCacheState(); n != 0 || all || rep.calls != 1 || rep.complete || rep.err != nil {
		t.Fatalf("six keys filled into a cache of five: %d entries, all keys %v, reported %+v; want 0, false", n, all, rep)
	}

	// A restore fills the cache from the new engine.
	other, err := Open(memory.New())
	if err != nil {
		t.Fatal(err)
	}
	commitTxn(t, other, 9, func(b *overlay.Batch) { b.Put([]byte("h5"), []byte("restored")) })
	fresh := &countingEngine{Engine: memory.New()}
	if _, err := restore(t, s, bytes.NewReader(snapshotBytes(t, other)), fresh); err != nil {
		t.Fatal(err)
	}
	s.awaitFill()
	if n, all := s.ReadCacheState(); n != 1 || !all {
		t.Fatalf("after a restore: %d entries, all keys %v; want 1, true", n, all)
	}
	fresh.gets = 0
	txn = s.NewTxn()
	if v, ok := txnGet(t, txn, "h5"); !ok || v != "restored" {
		t.Fatalf("after restore h5 = %q, %v; want restored", v, ok)
	}
	if _, ok := txnGet(t, txn, "h6"); ok || fresh.gets != 0 {
		t.Fatalf("after restore h6 found=%v after %d engine gets; want absent from the cache", ok, fresh.gets)
	}
	txn.Abort()
}

// TestReadCacheFillMerge checks that the writes and reads of transactions
// that run while a fill reads its snapshot win over the snapshot, and
// that a fill is dropped when the live cache forgot a key meanwhile.
func TestReadCacheFillMerge(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries int
		want    bool // complete after the merge
	}{
		{"merged", 8, true},
		{"evicted meanwhile", 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng := &countingEngine{Engine: memory.New()}
			s, err := Open(eng)
			if err != nil {
				t.Fatal(err)
			}
			commitTxn(t, s, 1, func(b *overlay.Batch) {
				b.Put([]byte("h1"), []byte("old"))
				b.Put([]byte("h2"), []byte("old"))
				b.Put([]byte("h3"), []byte("old"))
			})
			gate := make(chan struct{})
			var rep fillReport
			s.SetReadCache(ReadCache{Keep: hot, Load: loadHot(gate), Filled: rep.filled, Entries: tc.entries})
			// While the fill waits: change every key its snapshot holds
			// and add two.
			commitTxn(t, s, 2, func(b *overlay.Batch) {
				b.Put([]byte("h1"), []byte("new"))
				b.Delete([]byte("h2"))
				b.Put([]byte("h4"), []byte("new"))
			})
			commitTxn(t, s, 3, func(b *overlay.Batch) {
				b.Put([]byte("h3"), []byte("new"))
				b.Put([]byte("h5"), []byte("new"))
			})
			if rep.calls != 0 {
				t.Fatal("a fill was adopted before it read anything")
			}
			close(gate)
			s.awaitFill()
			// The fill itself read every key; the merge decides.
			if n, all := s.ReadCacheState(); all != tc.want || rep != (fillReport{calls: 1, entries: 3, complete: true}) {
				t.Fatalf("after the fill: %d entries, all keys %v, reported %+v; want all keys %v", n, all, rep, tc.want)
			}
			eng.gets = 0
			txn := s.NewTxn()
			defer txn.Abort()
			for k, want := range map[string]string{"h1": "new", "h2": "", "h3": "new", "h4": "new", "h5": "new", "h6": ""} {
				v, ok := txnGet(t, txn, k)
				if v != want || ok != (want != "") {
					t.Fatalf("%s = %q, %v; want %q", k, v, ok, want)
				}
			}
			if tc.want && eng.gets != 0 {
				t.Fatalf("%d engine gets after a merged fill; want 0", eng.gets)
			}
		})
	}
}

// TestReadCacheFillStopped: a restore or a close while a fill runs stops
// it; a stopped fill is never adopted.
func TestReadCacheFillStopped(t *testing.T) {
	s, err := Open(memory.New())
	if err != nil {
		t.Fatal(err)
	}
	commitTxn(t, s, 1, func(b *overlay.Batch) { b.Put([]byte("h1"), []byte("old engine")) })
	gate := make(chan struct{})
	var rep fillReport
	s.SetReadCache(ReadCache{Keep: hot, Load: loadHot(gate), Filled: rep.filled})
	other, err := Open(memory.New())
	if err != nil {
		t.Fatal(err)
	}
	commitTxn(t, other, 5, func(b *overlay.Batch) { b.Put([]byte("h2"), []byte("new engine")) })
	first := s.fill.Load()
	go func() {
		<-first.stop // Restore stopped the fill of the old engine
		close(gate)  // which then reads; the second fill does not wait
	}()
	if _, err := restore(t, s, bytes.NewReader(snapshotBytes(t, other)), memory.New()); err != nil {
		t.Fatal(err)
	}
	s.awaitFill()
	if n, all := s.ReadCacheState(); n != 1 || !all || rep.calls != 1 {
		t.Fatalf("after a restore during a fill: %d entries, all keys %v, reported %+v; want the new engine's 1 key", n, all, rep)
	}
	txn := s.NewTxn()
	if _, ok := txnGet(t, txn, "h1"); ok {
		t.Fatal("h1 of the replaced engine found")
	}
	if v, ok := txnGet(t, txn, "h2"); !ok || v != "new engine" {
		t.Fatalf("h2 = %q, %v; want new engine", v, ok)
	}
	txn.Abort()

	// Close waits for a running fill to give up before closing the engine.
	gate = make(chan struct{})
	rep = fillReport{}
	s.SetReadCache(ReadCache{Keep: hot, Load: loadHot(gate), Filled: rep.filled})
	running := s.fill.Load()
	go func() {
		<-running.stop
		close(gate)
	}()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-running.done:
	default:
		t.Fatal("Close returned before the fill ended")
	}
	if s.fill.Load() != nil || rep.calls != 0 {
		t.Fatalf("after Close: fill %v, reported %+v; want none", s.fill.Load(), rep)
	}
}

// failingSnapshotEngine cannot take snapshots, as a broken engine might.
type failingSnapshotEngine struct{ storage.Engine }

func (failingSnapshotEngine) NewSnapshot() (storage.Snapshot, error) {
	return nil, errors.New("disk on fire")
}

// TestReadCacheFillError: a fill that fails is reported, and leaves an
// empty cache that reads through to the engine.
func TestReadCacheFillError(t *testing.T) {
	eng := memory.New()
	s, err := Open(failingSnapshotEngine{eng})
	if err != nil {
		t.Fatal(err)
	}
	commitTxn(t, s, 1, func(b *overlay.Batch) { b.Put([]byte("h1"), []byte("a")) })
	var rep fillReport
	s.SetReadCache(ReadCache{Keep: hot, Load: loadHot(nil), Filled: rep.filled})
	s.awaitFill()
	if rep.calls != 1 || rep.err == nil || !strings.Contains(rep.err.Error(), "disk on fire") {
		t.Fatalf("fill over a failing engine reported %+v; want the engine's error", rep)
	}
	if n, all := s.ReadCacheState(); n != 0 || all {
		t.Fatalf("after a failed fill: %d entries, all keys %v; want 0, false", n, all)
	}
	txn := s.NewTxn()
	if v, ok := txnGet(t, txn, "h1"); !ok || v != "a" {
		t.Fatalf("h1 = %q, %v after a failed fill; want a", v, ok)
	}
	txn.Abort()
}
