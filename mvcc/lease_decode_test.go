package mvcc

import (
	"math/rand/v2"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// TestCurrentLeaseAgreesWithDecode compares currentLease, which a delete
// without prev_kv uses, with decodeKV on records encodeKV writes and on
// random corruptions of them: both must refuse the same records, and give
// the same lease where they accept one. (Written by a reviewer.)
func TestCurrentLeaseAgreesWithDecode(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	n := 200000
	if testing.Short() {
		n = 20000
	}
	for i := range n {
		kv := &mvccpb.KeyValue{
			Key: []byte("key"), Value: make([]byte, rng.IntN(40)),
			CreateRevision: rng.Int64N(1 << 40), ModRevision: rng.Int64(), Version: rng.Int64N(100),
		}
		switch rng.IntN(3) {
		case 0:
			kv.Lease = rng.Int64()
		case 1:
			kv.Lease = -rng.Int64()
		}
		b := encodeKV(kindPut, kv)[1:]
		if i%2 == 1 {
			for range 1 + rng.IntN(3) {
				b[rng.IntN(len(b))] = byte(rng.IntN(256))
			}
		}
		want, derr := decodeKV(b)
		got, lerr := currentLease(b)
		switch {
		case (derr == nil) != (lerr == nil):
			t.Fatalf("%x: decodeKV %v, currentLease %v", b, derr, lerr)
		case derr == nil && got != want.Lease:
			t.Fatalf("%x: lease %d, decodeKV %d", b, got, want.Lease)
		}
	}
}
