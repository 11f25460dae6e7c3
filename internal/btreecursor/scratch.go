package btreecursor

import "sync"

// maxScratch bounds the scratch kept in the pool, so one huge value does
// not pin memory for ever.
const maxScratch = 64 << 10

// Scratch is an iterator's reusable space for a copied key and value:
// iterators hand out copies, so a caller writing into a returned slice
// cannot corrupt an item that the tree and its copies share.
type Scratch struct{ Key, Val []byte }

var scratchPool = sync.Pool{New: func() any { return new(Scratch) }}

// GetScratch returns scratch space from a pool.
func GetScratch() *Scratch { return scratchPool.Get().(*Scratch) }

// PutScratch returns s to the pool, dropping oversized buffers.
func PutScratch(s *Scratch) {
	if cap(s.Key) > maxScratch {
		s.Key = nil
	}
	if cap(s.Val) > maxScratch {
		s.Val = nil
	}
	scratchPool.Put(s)
}
