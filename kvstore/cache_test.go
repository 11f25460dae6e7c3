package kvstore

import (
	"bytes"
	"errors"
	"fmt"
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
	s.SetReadCache(hot, 4)

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
	if n := len(s.cache.m); n > 4 {
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
	if n := len(s.cache.m); n != 0 {
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
