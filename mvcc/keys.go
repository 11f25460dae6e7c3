package mvcc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/metcd/metcd/storage"
	"google.golang.org/protobuf/encoding/protowire"
)

// Engine key prefixes; see doc.go for the layout. Every key this package
// owns starts with 'v', so the MVCC key space can share an engine with
// other state machines (kvstore uses 'k', 'm', 'r', 'a', 'n').
var (
	prefixCurrent = []byte("vk") // vk + key → current KeyValue
	prefixRev     = []byte("vr") // vr + main + sub → record
	prefixIndex   = []byte("vx") // vx + escaped key + main + sub → kind

	// endCurrent, endRev and endIndex are the exclusive upper bounds of
	// their prefixes.
	endCurrent = []byte("vl")
	endRev     = []byte("vs")
	endIndex   = []byte("vy")

	metaRev      = []byte("vmrev")
	metaCompact  = []byte("vmcompact")
	metaPhysical = []byte("vmphysical")
	metaKeys     = []byte("vmkeys")
)

// Record kinds: the first byte of a vr value and the whole of a vx value.
const (
	kindPut    = 'p'
	kindDelete = 'd'
)

// revLen is the size of an encoded revision: main then sub, 8 bytes each,
// big endian, so that engine order is revision order.
const revLen = 16

// errCorrupt reports engine contents this package did not write.
var errCorrupt = errors.New("mvcc: corrupt engine data")

// revision identifies one change: main is the revision of the write
// transaction, sub orders the changes inside it.
type revision struct {
	main, sub int64
}

func appendRev(dst []byte, r revision) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.main))
	return binary.BigEndian.AppendUint64(dst, uint64(r.sub))
}

func parseRev(b []byte) revision {
	return revision{
		main: int64(binary.BigEndian.Uint64(b)),
		sub:  int64(binary.BigEndian.Uint64(b[8:])),
	}
}

// currentKey is vk + key.
func currentKey(key []byte) []byte {
	return append(append(make([]byte, 0, len(prefixCurrent)+len(key)), prefixCurrent...), key...)
}

// revKey is vr + rev.
func revKey(r revision) []byte {
	return appendRev(append(make([]byte, 0, len(prefixRev)+revLen), prefixRev...), r)
}

// appendEscaped appends key escaped so that the result sorts like key and
// no escaped key is a prefix of another: 0x00 becomes 0x00 0xff, and the
// key ends with the terminator 0x00 0x01.
func appendEscaped(dst, key []byte) []byte {
	for {
		i := bytes.IndexByte(key, 0)
		if i < 0 {
			dst = append(dst, key...)
			break
		}
		dst = append(dst, key[:i+1]...)
		dst = append(dst, 0xff)
		key = key[i+1:]
	}
	return append(dst, 0x00, 0x01)
}

// indexPrefix is vx + escaped key: the prefix of every index entry of key.
func indexPrefix(key []byte) []byte {
	return appendEscaped(append(make([]byte, 0, len(prefixIndex)+len(key)+2+revLen), prefixIndex...), key)
}

// indexKey is vx + escaped key + rev.
func indexKey(key []byte, r revision) []byte {
	return appendRev(indexPrefix(key), r)
}

// splitIndexKey splits an index entry's engine key into the escaped key
// (vx and terminator included, so equal prefixes mean equal keys) and the
// revision.
func splitIndexKey(k []byte) (prefix []byte, r revision, err error) {
	if len(k) < len(prefixIndex)+2+revLen || !bytes.HasPrefix(k, prefixIndex) {
		return nil, revision{}, fmt.Errorf("%w: index key %q", errCorrupt, k)
	}
	n := len(k) - revLen
	if k[n-2] != 0x00 || k[n-1] != 0x01 {
		return nil, revision{}, fmt.Errorf("%w: index key %q", errCorrupt, k)
	}
	return k[:n], parseRev(k[n:]), nil
}

// unescapeIndexKey returns the user key of an index entry's prefix.
func unescapeIndexKey(prefix []byte) []byte {
	esc := prefix[len(prefixIndex) : len(prefix)-2]
	key := make([]byte, 0, len(esc))
	for i := 0; i < len(esc); i++ {
		key = append(key, esc[i])
		if esc[i] == 0 {
			i++ // skip the 0xff
		}
	}
	return key
}

// keyBounds returns the engine bounds of the user-key interval [key, end)
// under a prefix that stores raw keys (vk). end follows etcd: empty means
// the single key, "\x00" means every key >= key.
func currentBounds(key, end []byte) (lower, upper []byte) {
	lower = currentKey(key)
	switch {
	case len(end) == 0:
		upper = append(bytes.Clone(lower), 0x00)
	case isFromKey(end):
		upper = endCurrent
	default:
		upper = currentKey(end)
	}
	return lower, upper
}

// indexBounds is currentBounds for the index (escaped keys).
func indexBounds(key, end []byte) (lower, upper []byte) {
	lower = indexPrefix(key)
	switch {
	case len(end) == 0:
		upper = append(bytes.Clone(lower), 0xff)
	case isFromKey(end):
		upper = endIndex
	default:
		upper = indexPrefix(end)
	}
	return lower, upper
}

func isFromKey(end []byte) bool { return len(end) == 1 && end[0] == 0 }

// inRange reports whether k is in the etcd interval [key, end).
func inRange(k, key, end []byte) bool {
	switch {
	case len(end) == 0:
		return bytes.Equal(k, key)
	case isFromKey(end):
		return bytes.Compare(k, key) >= 0
	default:
		return bytes.Compare(k, key) >= 0 && bytes.Compare(k, end) < 0
	}
}

func putInt64(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }

func parseInt64(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: meta value of %d bytes", errCorrupt, len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

// hotCounters are the keys besides current records that HotKey selects.
var hotCounters = [][]byte{metaRev, metaCompact, metaKeys}

// HotKey reports whether key is one that write transactions read on every
// write and that only write transactions change: a key's current record
// and the revision and key counters. A read cache in front of the engine
// may keep these (kvstore.Store.SetReadCache); the history and index
// records, which physical compaction deletes on its own goroutine, are
// not among them.
func HotKey(key []byte) bool {
	if bytes.HasPrefix(key, prefixCurrent) {
		return true
	}
	for _, k := range hotCounters {
		if bytes.Equal(key, k) {
			return true
		}
	}
	return false
}

// TrimHot gives the form of a hot key's value that a read cache may keep
// in its place (kvstore.ReadCache.Trim): a current record without its key
// and value fields, which is all a put reads of it (through
// overlay.Batch.GetTrimmed), in a tenth of the memory for 256-byte
// values. It returns nil, keep the value whole, for the counters and for
// a record it cannot parse (a Get then reports that).
func TrimHot(key, value []byte) []byte {
	if !bytes.HasPrefix(key, prefixCurrent) {
		return nil
	}
	const keyField, valueField = 1, 5 // mvccpb.KeyValue's key and value
	out := make([]byte, 0, 32)
	for b := value; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil
		}
		if num != keyField && num != valueField {
			out = append(out, b[:n+m]...)
		}
		b = b[n+m:]
	}
	return out
}

// LoadHot calls add for every key of r that HotKey selects, with its
// value, so that a read cache can hold them all (kvstore.ReadCache.Load);
// it stops, reporting false, when add returns false. It reports false
// without reading them when they are more than max; the live-key counter
// tells that first. r should be a snapshot, so that the counter and the
// records agree.
func LoadHot(r storage.Reader, max int, add func(key, value []byte) bool) (bool, error) {
	n, err := Keys(r)
	if err != nil {
		return false, err
	}
	if n+int64(len(hotCounters)) > int64(max) {
		return false, nil
	}
	for _, k := range hotCounters {
		v, err := r.Get(k)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return false, err
		}
		if !add(k, v) {
			return false, nil
		}
	}
	it, err := r.NewIterator(storage.IterOptions{Lower: prefixCurrent, Upper: endCurrent})
	if err != nil {
		return false, err
	}
	defer it.Close()
	added := int64(0)
	for it.Next() {
		if added++; added > n {
			// The counter disagrees with the records; a Get reports corrupt
			// records, so leave the cache to fill as it reads.
			return false, nil
		}
		if !add(it.Key(), it.Value()) {
			return false, nil
		}
	}
	return added == n, it.Err()
}
