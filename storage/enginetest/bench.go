package enginetest

import (
	"errors"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/metcd/metcd/storage"
)

const (
	benchValueSize = 256
	benchKeys      = 100_000
	benchScanLen   = 1000
)

// benchKey returns the fixed-width key for i, so keys sort numerically.
func benchKey(i int) []byte {
	k := make([]byte, 0, 16)
	k = append(k, "bench/"...)
	s := strconv.Itoa(i)
	for range 10 - len(s) {
		k = append(k, '0')
	}
	return append(k, s...)
}

func benchValue() []byte {
	rng := rand.New(rand.NewPCG(1, 1))
	v := make([]byte, benchValueSize)
	for i := range v {
		v[i] = byte(rng.Uint32())
	}
	return v
}

// Bench runs the shared benchmarks against the engine f opens. Every value
// is 256 bytes. The Put benchmarks report ns per key written, with keys
// cycling through 100k so long runs become overwrites; the read benchmarks
// share one engine preloaded with 100k keys.
func Bench(b *testing.B, f Factory) {
	val := benchValue()
	b.Run("PutSeq", func(b *testing.B) {
		e := open(b, f)
		keys := benchKeys100k()
		b.SetBytes(benchValueSize)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			bt := e.NewBatch()
			bt.Put(keys[i%len(keys)], val)
			if err := bt.Commit(false); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("PutBatch100", func(b *testing.B) {
		e := open(b, f)
		keys := benchKeys100k()
		b.SetBytes(benchValueSize)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; {
			bt := e.NewBatch()
			for end := min(i+100, b.N); i < end; i++ {
				bt.Put(keys[i%len(keys)], val)
			}
			if err := bt.Commit(false); err != nil {
				b.Fatal(err)
			}
		}
	})

	// The read benchmarks share one preloaded engine, opened on the parent
	// b so that reruns of a sub-benchmark with a larger b.N reuse it.
	keys := benchKeys100k()
	e := open(b, f)
	for i := 0; i < len(keys); i += 1000 {
		commit(b, e, false, func(bt storage.Batch) {
			for _, k := range keys[i : i+1000] {
				bt.Put(k, val)
			}
		})
	}
	if err := e.Sync(); err != nil {
		b.Fatal(err)
	}

	b.Run("GetHit100k", func(b *testing.B) {
		order := rand.New(rand.NewPCG(2, 2)).Perm(len(keys))
		b.SetBytes(benchValueSize)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if _, err := e.Get(keys[order[i%len(order)]]); err != nil {
				b.Fatal(err)
			}
		}
	})
	// A miss is what a put of a new key costs the store first: the lookup
	// of the key's current record. The keys sort between loaded ones.
	b.Run("GetMiss100k", func(b *testing.B) {
		order := rand.New(rand.NewPCG(3, 3)).Perm(len(keys))
		miss := make([][]byte, len(keys))
		for i, k := range keys {
			miss[i] = append(k[:len(k):len(k)], 'x')
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if _, err := e.Get(miss[order[i%len(order)]]); !errors.Is(err, storage.ErrNotFound) {
				b.Fatalf("Get of an absent key: %v, want ErrNotFound", err)
			}
		}
	})
	b.Run("Scan1000", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(3, 3))
		b.SetBytes(benchScanLen * benchValueSize)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			start := rng.IntN(len(keys) - benchScanLen)
			it, err := e.NewIterator(storage.IterOptions{Lower: keys[start], Upper: keys[start+benchScanLen]})
			if err != nil {
				b.Fatal(err)
			}
			n, size := 0, 0
			for it.Next() {
				n++
				size += len(it.Key()) + len(it.Value())
			}
			if err := it.Close(); err != nil || n != benchScanLen {
				b.Fatalf("scan saw %d keys, %d bytes, Close %v", n, size, err)
			}
		}
	})
	b.Run("Snapshot", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			s, err := e.NewSnapshot()
			if err != nil {
				b.Fatal(err)
			}
			s.Close()
		}
	})
	// Snapshot alone can be served from a cache by engines that notice
	// nothing changed; a write before each one measures the real cost,
	// including the copy-on-write work the snapshot causes.
	b.Run("PutThenSnapshot", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(4, 4))
		b.ReportAllocs()
		for range b.N {
			bt := e.NewBatch()
			bt.Put(keys[rng.IntN(len(keys))], val)
			if err := bt.Commit(false); err != nil {
				b.Fatal(err)
			}
			s, err := e.NewSnapshot()
			if err != nil {
				b.Fatal(err)
			}
			s.Close()
		}
	})
}

// benchKeys100k returns benchKeys keys in ascending order.
func benchKeys100k() [][]byte {
	keys := make([][]byte, benchKeys)
	for i := range keys {
		keys[i] = benchKey(i)
	}
	return keys
}
