package kvstore

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/memory"
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
	if _, err := s.Restore(bytes.NewReader(snapshotBytes(t, other)), memory.New()); err != nil {
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
// key) but never wrong.
func TestReadCacheArena(t *testing.T) {
	for _, tc := range []struct {
		name string
		hash func(maphash.Seed, []byte) uint64
		max  int
	}{
		{"maphash", maphash.Bytes, 64},
		{"colliding", func(_ maphash.Seed, k []byte) uint64 { return uint64(k[len(k)-1] % 8) }, 64},
		{"small", maphash.Bytes, 5},
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
			c.minCompact = 0 // compact as soon as half the arena is dead
			type want struct {
				v              string
				found, trimmed bool
			}
			model := map[string]want{}
			rng := rand.New(rand.NewPCG(7, 7))
			compactions := 0
			for i := 0; i < 20000; i++ {
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
