package lease

import (
	"encoding/binary"
	"fmt"
)

// Engine layout. This package owns every engine key that starts with 'l'
// or 'L' (design.md's planned layout; mvcc owns 'v', kvstore 'k', 'm',
// 'r', 'a' and 'n'). Integers are 8-byte big endian, the id as uint64.
//
//	l + id        → record: format byte 1, id, ttl, checkpointed remaining TTL (25 bytes)
//	L + id + key  → (empty): key is attached to lease id
//
// A lease's attached keys therefore sort together, in key order, right
// after each other.
const (
	prefixRecord = 'l'
	prefixKey    = 'L'

	recordFormat = 1
	recordLen    = 1 + 3*8
	recordKeyLen = 1 + 8
)

// record is the replicated part of a lease, as stored in the engine.
type record struct {
	id        int64
	ttl       int64 // seconds, already raised to the minimum at grant
	remaining int64 // checkpointed remaining TTL in seconds; 0: unset
}

func recordKey(id int64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, recordKeyLen), prefixRecord), uint64(id))
}

// keyPrefix is L + id, the prefix of every key attached to lease id.
func keyPrefix(id int64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, recordKeyLen), prefixKey), uint64(id))
}

func attachedKey(id int64, key []byte) []byte {
	return append(append(make([]byte, 0, recordKeyLen+len(key)), keyPrefix(id)...), key...)
}

func (r record) encode() []byte {
	b := make([]byte, 1, recordLen)
	b[0] = recordFormat
	b = binary.BigEndian.AppendUint64(b, uint64(r.id))
	b = binary.BigEndian.AppendUint64(b, uint64(r.ttl))
	return binary.BigEndian.AppendUint64(b, uint64(r.remaining))
}

// decodeRecord parses the record stored under engine key k.
func decodeRecord(k, v []byte) (record, error) {
	if len(k) != recordKeyLen || k[0] != prefixRecord {
		return record{}, fmt.Errorf("lease: bad record key %x", k)
	}
	if len(v) != recordLen || v[0] != recordFormat {
		return record{}, fmt.Errorf("lease: bad record %x under %x", v, k)
	}
	r := record{
		id:        int64(binary.BigEndian.Uint64(v[1:])),
		ttl:       int64(binary.BigEndian.Uint64(v[9:])),
		remaining: int64(binary.BigEndian.Uint64(v[17:])),
	}
	if want := int64(binary.BigEndian.Uint64(k[1:])); r.id != want {
		return record{}, fmt.Errorf("lease: record of lease %d stored under lease %d", r.id, want)
	}
	return r, nil
}

// splitAttachedKey parses L + id + key.
func splitAttachedKey(k []byte) (id int64, key []byte, err error) {
	if len(k) <= recordKeyLen || k[0] != prefixKey {
		return 0, nil, fmt.Errorf("lease: bad attached key %x", k)
	}
	return int64(binary.BigEndian.Uint64(k[1:])), k[recordKeyLen:], nil
}
