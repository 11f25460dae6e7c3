package mvcc

import (
	"fmt"
	"hash/crc32"

	"github.com/metcd/metcd/storage"
)

// HashKV is etcd's HashKV over the key space r holds: a CRC-32
// (Castagnoli) of the revision records a read at rev or later can still
// see, in revision order. These are every record above the compacted
// revision up to rev, and below or at it the version of each key that was
// live at the compacted revision (etcd's "keep" set). Each record is
// hashed as its engine key (vr + main + sub) then its engine value, so
// members that applied the same history (whatever their batch boundaries)
// get the same hash, and so does a member whether or not its physical
// compaction of the compacted revision has run, finished or not.
//
// rev 0 is the current revision. It fails with ErrFutureRev for a rev
// above the current revision and ErrCompacted for a positive one below the
// compacted revision. A negative rev hashes no record, as etcd's does. It returns the hash, the revision hashed and the compacted
// revision (-1 if none), the three fields of etcd's HashKVResponse the
// server does not fill itself.
//
// Its cost grows with the uncompacted history up to rev, plus one index
// lookup per record at or below the compacted revision still in the
// engine. r should be a snapshot: on the live engine a compaction
// committed during the scan makes it start again.
func (s *Store) HashKV(r storage.Reader, rev int64) (hash uint32, hashRev, compactRev int64, err error) {
	for {
		m, err := readRevs(r)
		if err != nil {
			return 0, 0, 0, err
		}
		hashRev = rev
		if hashRev == 0 {
			hashRev = m.rev
		}
		if hashRev > m.rev {
			return 0, 0, 0, ErrFutureRev
		}
		if hashRev > 0 && hashRev < m.compact {
			return 0, 0, 0, ErrCompacted
		}
		hash, err = hashKV(r, hashRev, m.compact)
		if err != nil {
			return 0, 0, 0, err
		}
		c, err := readInt64(r, metaCompact, -1)
		if err != nil {
			return 0, 0, 0, err
		}
		if c == m.compact {
			return hash, hashRev, m.compact, nil
		}
	}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func hashKV(r storage.Reader, rev, compact int64) (uint32, error) {
	h := crc32.New(castagnoli)
	if rev < 1 {
		return h.Sum32(), nil
	}
	it, err := r.NewIterator(storage.IterOptions{
		Lower: revKey(revision{main: 1}),
		Upper: revKey(revision{main: rev + 1}),
	})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	for it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) != len(prefixRev)+revLen {
			return 0, fmt.Errorf("%w: revision key %q", errCorrupt, k)
		}
		rv := parseRev(k[len(prefixRev):])
		if rv.main <= compact {
			// Kept only if it is the key's live version at compact.
			kind, kv, err := decodeRecord(v)
			if err != nil {
				return 0, err
			}
			if kind != kindPut {
				continue
			}
			last, ok, err := lastIndexEntry(r, kv.Key, compact)
			if err != nil {
				return 0, err
			}
			if !ok || last != rv {
				continue
			}
		}
		h.Write(k)
		h.Write(v)
	}
	if err := it.Err(); err != nil {
		return 0, err
	}
	return h.Sum32(), nil
}
