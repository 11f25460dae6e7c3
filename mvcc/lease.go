package mvcc

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/metcd/metcd/storage/overlay"
)

// DeleteKeys is the key-space half of a lease revoke (or expiry): one
// write transaction deleting each of keys in the given order, as etcd's
// lessor does with the sorted keys of the revoked lease (lease.Lessor's
// Revoke returns them sorted). Keys already gone are skipped; if none is
// left the revision does not move. It returns the revision after it, the
// LeaseRevoke response's header revision.
func (s *Store) DeleteKeys(b *overlay.Batch, keys [][]byte) (int64, error) {
	w := s.Write(b)
	if w.err != nil {
		return 0, w.err
	}
	defer w.End()
	for _, k := range keys {
		if len(k) == 0 {
			continue
		}
		if _, err := w.deleteRange(&pb.DeleteRangeRequest{Key: k}); err != nil {
			return 0, err
		}
	}
	return w.rev(), nil
}
