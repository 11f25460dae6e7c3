package mvcc

import (
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/engines"
)

// BenchmarkRange reads one key of 10,000 at the current revision from the
// live engine, the serializable range the server serves: Range reads the
// revision from the engine, RangeCommitted takes it from the Store.
func BenchmarkRange(b *testing.B) {
	for _, name := range engines.Names() {
		e := newEnvOn(b, openEngine(b, name), Options{})
		const keys = 10_000
		for i := range keys {
			w := e.s.Write(e.ob)
			if _, err := w.Put(&pb.PutRequest{Key: fmt.Appendf(nil, "key%05d", i), Value: make([]byte, 256)}); err != nil {
				b.Fatal(err)
			}
			w.End()
			if i%1000 == 999 {
				e.commit()
			}
		}
		for _, fn := range []struct {
			name string
			f    func(*Store, storage.Reader, *pb.RangeRequest) (*pb.RangeResponse, error)
		}{{"Range", (*Store).Range}, {"RangeCommitted", (*Store).RangeCommitted}} {
			b.Run(name+"/"+fn.name, func(b *testing.B) {
				req := &pb.RangeRequest{}
				for i := 0; b.Loop(); i++ {
					req.Key = fmt.Appendf(req.Key[:0], "key%05d", i*7919%keys)
					resp, err := fn.f(e.s, e.eng, req)
					if err != nil || len(resp.Kvs) != 1 {
						b.Fatalf("range %s: %v, %d pairs", req.Key, err, len(resp.Kvs))
					}
				}
			})
		}
	}
}
