package mvcc

import (
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// BenchmarkDeleteRange deletes 100,000 keys of 100-byte values in one
// DeleteRange and commits the batch, as the apply loop does with one
// large entry; the keys are written again, untimed, before each round.
func BenchmarkDeleteRange(b *testing.B) {
	const keys = 100_000
	for _, name := range []string{"memory", "pebble", "leveldb", "bolt"} {
		b.Run(name, func(b *testing.B) {
			e := newEnvOn(b, openEngine(b, name), Options{})
			load := func() {
				for i := range keys {
					w := e.s.Write(e.ob)
					if _, err := w.Put(&pb.PutRequest{Key: fmt.Appendf(nil, "/big/%08d", i), Value: make([]byte, 100)}); err != nil {
						b.Fatal(err)
					}
					w.End()
					if i%1000 == 999 {
						e.commit()
					}
				}
				e.commit()
			}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				load()
				b.StartTimer()
				w := e.s.Write(e.ob)
				resp, err := w.DeleteRange(&pb.DeleteRangeRequest{Key: []byte("/big/"), RangeEnd: []byte("/big0")})
				if err != nil || resp.Deleted != keys {
					b.Fatalf("delete: %v, %d deleted", err, resp.GetDeleted())
				}
				w.End()
				e.commit()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*keys), "ns/key")
		})
	}
}
