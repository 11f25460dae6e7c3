package memory_test

import (
	"bytes"
	"testing"

	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/enginetest"
	"github.com/metcd/metcd/storage/memory"
)

var factory = enginetest.Factory{
	Name: "memory",
	Open: func(testing.TB, string) storage.Engine { return memory.New() },
}

func TestEngine(t *testing.T) { enginetest.Run(t, factory) }

func BenchmarkEngine(b *testing.B) { enginetest.Bench(b, factory) }

func TestProperties(t *testing.T) {
	e := memory.New()
	defer e.Close()
	if e.Name() != "memory" || e.Durable() {
		t.Errorf("Name, Durable = %q, %v; want memory, false", e.Name(), e.Durable())
	}
	st, err := e.Stats()
	if err != nil || st.DiskBytes != 0 {
		t.Errorf("Stats = %+v, %v; want DiskBytes 0", st, err)
	}
}

// An open iterator must not hold the engine lock: the commit below would
// deadlock if it did.
func TestIteratorDoesNotBlockWriters(t *testing.T) {
	e := memory.New()
	defer e.Close()
	put := func(k, v string) {
		b := e.NewBatch()
		b.Put([]byte(k), []byte(v))
		if err := b.Commit(false); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"a", "b", "c"} {
		put(k, "old")
	}
	it, err := e.NewIterator(storage.IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for it.Next() {
		put(string(it.Key()), "new")
		put("z", "added")
		if string(it.Value()) != "old" {
			t.Errorf("%s = %s, want the value as of NewIterator", it.Key(), it.Value())
		}
		n++
	}
	if n != 3 {
		t.Errorf("iterated %d keys, want the 3 present at NewIterator", n)
	}
}

// Writing into slices returned by an iterator must not corrupt the tree.
func TestIteratorSlicesAreCopies(t *testing.T) {
	e := memory.New()
	defer e.Close()
	b := e.NewBatch()
	b.Put([]byte("key"), []byte("value"))
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	it, err := e.NewIterator(storage.IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for it.Next() {
		copy(it.Key(), "XXX")
		copy(it.Value(), "XXXXX")
	}
	it.Close()
	v, err := e.Get([]byte("key"))
	if err != nil || !bytes.Equal(v, []byte("value")) {
		t.Errorf("Get(key) = %q, %v after writing into iterator slices", v, err)
	}
}

func BenchmarkWorkloads(b *testing.B) { enginetest.BenchWorkloads(b, factory) }
