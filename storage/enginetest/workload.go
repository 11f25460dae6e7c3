package enginetest

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/metcd/metcd/storage"
)

// BenchWorkloads measures the mixes metcd's engine comparison publishes:
// read-heavy (95% Get) and write-heavy (95% single-key batch commits, no
// sync, as metcd's apply loop commits), over 100k and 1M preloaded keys
// with 256-byte values, with 1 and 64 concurrent clients. Keys are chosen
// uniformly at random. ns/op is per operation of either kind.
func BenchWorkloads(b *testing.B, f Factory) {
	parent := b // owns the preloaded engines, which outlive each sub-benchmark
	val := benchValue()
	for _, keys := range []int{100_000, 1_000_000} {
		var e storage.Engine
		load := func(b *testing.B) storage.Engine {
			if e == nil {
				e = open(parent, f)
				for lo := 0; lo < keys; lo += 10_000 {
					bt := e.NewBatch()
					for i := lo; i < lo+10_000 && i < keys; i++ {
						bt.Put(benchKey(i), val)
					}
					if err := bt.Commit(false); err != nil {
						b.Fatal(err)
					}
				}
				if err := e.Sync(); err != nil {
					b.Fatal(err)
				}
			}
			return e
		}
		for _, mix := range []struct {
			name  string
			reads int // percent
		}{{"read95", 95}, {"write95", 5}} {
			for _, clients := range []int{1, 64} {
				name := fmt.Sprintf("keys=%dk/%s/clients=%d", keys/1000, mix.name, clients)
				b.Run(name, func(b *testing.B) {
					e := load(b)
					var seed atomic.Uint64
					b.SetParallelism(max(1, clients/max(1, runtimeProcs())))
					b.ReportAllocs()
					b.ResetTimer()
					work := func(pb interface{ Next() bool }) {
						rng := rand.New(rand.NewPCG(seed.Add(1), 7))
						for pb.Next() {
							k := benchKey(rng.IntN(keys))
							if rng.IntN(100) < mix.reads {
								if _, err := e.Get(k); err != nil {
									b.Error(err)
									return
								}
								continue
							}
							bt := e.NewBatch()
							bt.Put(k, val)
							if err := bt.Commit(false); err != nil {
								b.Error(err)
								return
							}
						}
					}
					if clients == 1 {
						work(&serial{n: b.N})
					} else {
						b.RunParallel(func(pb *testing.PB) { work(pb) })
					}
				})
			}
		}
	}
}

type serial struct{ n int }

func (s *serial) Next() bool {
	s.n--
	return s.n >= 0
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
