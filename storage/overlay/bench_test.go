package overlay_test

import (
	"fmt"
	"testing"

	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/memory"
	"github.com/metcd/metcd/storage/overlay"
)

func benchKey(i int) []byte { return fmt.Appendf(nil, "/registry/pods/ns/pod-%06d", i) }

var benchValue = make([]byte, 100)

// benchSetup returns a batch over a memory engine holding keys 0, 2, 4, ...
// below 2*baseKeys, with pending puts of the odd keys below 2*pending.
func benchSetup(b *testing.B, baseKeys, pending int) *overlay.Batch {
	m := model{}
	for i := range baseKeys {
		m[string(benchKey(2*i))] = string(benchValue)
	}
	ob := overlay.New(newEngine(b, m))
	for i := range pending {
		ob.Put(benchKey(2*i+1), benchValue)
	}
	return ob
}

// BenchmarkGet reads keys written by the batch (pending) and keys only the
// base holds (base: one pending-tree miss, then the engine).
func BenchmarkGet(b *testing.B) {
	ob := benchSetup(b, 10000, 1000)
	for _, bc := range []struct {
		name string
		key  func(i int) []byte
	}{
		{"pending", func(i int) []byte { return benchKey(2*(i%1000) + 1) }},
		{"base", func(i int) []byte { return benchKey(2 * (i % 10000)) }},
	} {
		keys := make([][]byte, 4096)
		for i := range keys {
			keys[i] = bc.key(i * 7919)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := ob.Get(keys[i%len(keys)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkIterate scans 1000 keys: merged, half from the pending writes
// and half from the base; and through the engine alone for reference.
func BenchmarkIterate(b *testing.B) {
	const n = 1000
	ob := benchSetup(b, n/2, n/2)
	base := benchSetup(b, n, 0) // no pending writes: the engine's iterator
	for _, bc := range []struct {
		name string
		r    storage.Reader
	}{{"merged", ob}, {"base-only", base}} {
		for _, rev := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/reverse=%v", bc.name, rev), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					it, err := bc.r.NewIterator(storage.IterOptions{Reverse: rev})
					if err != nil {
						b.Fatal(err)
					}
					k := 0
					for it.Next() {
						_, _ = it.Key(), it.Value()
						k++
					}
					if k != n || it.Err() != nil {
						b.Fatal(k, it.Err())
					}
					it.Close()
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/key")
			})
		}
	}
}

// BenchmarkPut writes 100-byte values over a 10000-key space, resetting
// the batch every 10000 puts as the apply loop does per Ready.
func BenchmarkPut(b *testing.B) {
	e := newEngine(b, model{})
	ob := overlay.New(e)
	keys := make([][]byte, 10000)
	for i := range keys {
		keys[i] = benchKey(i * 7919 % len(keys))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ob.Put(keys[i], benchValue)
		if i++; i == len(keys) {
			i = 0
			ob.Reset(e)
		}
	}
}

// BenchmarkTxn is one apply-loop transaction: a short range read, then a
// put, on a batch holding 1000 pending writes. The put follows an
// iterator, so it pays the copy-on-write of the clone the iterator took.
func BenchmarkTxn(b *testing.B) {
	ob := benchSetup(b, 10000, 1000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := 2 * (i * 7919 % 1000)
		it, err := ob.NewIterator(storage.IterOptions{Lower: benchKey(k), Upper: benchKey(k + 4)})
		if err != nil {
			b.Fatal(err)
		}
		for it.Next() {
		}
		it.Close()
		ob.Put(benchKey(k+1), benchValue)
		i++
	}
}

// BenchmarkSmallReady is the Batch of a Ready of one put, as the server
// makes one per Ready: five small writes, applied to an engine batch.
func BenchmarkSmallReady(b *testing.B) {
	e := memory.New()
	defer e.Close()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ob := overlay.New(e)
		ob.Put(fmt.Appendf(nil, "vk/registry/pods/p%06d", i%1000), benchValue)
		ob.Put([]byte("vr0000000000000001"), benchValue)
		ob.Put([]byte("vx/registry/pods/p0000001"), []byte{'p'})
		ob.Put([]byte("vmrev"), []byte("12345678"))
		ob.Put([]byte("vmkeys"), []byte("12345678"))
		eb := e.NewBatch()
		ob.ApplyTo(eb)
		eb.Close()
		i++
	}
}
