package btreecursor

import "github.com/tidwall/btree"

// hintSlots is the number of path hints in Hints.
const hintSlots = 16

// Hints are path hints for the writes and reads of one B-tree, one per
// family of keys sharing their first two bytes. Writes come in runs that
// ascend within a family (mvcc's revision records, its index entries, the
// keys of a range delete), so a family's next write usually lands next to
// its last one, and a hint lets the search start there instead of at the
// root. Families that share a slot only make each other's hints miss,
// which costs what a search without a hint costs. The zero value is ready
// to use.
type Hints [hintSlots]btree.PathHint

// For returns the hint of key's family.
func (h *Hints) For(key []byte) *btree.PathHint {
	s := 0
	if len(key) > 0 {
		s = int(key[0]) * 31
	}
	if len(key) > 1 {
		s += int(key[1])
	}
	return &h[s&(hintSlots-1)]
}
