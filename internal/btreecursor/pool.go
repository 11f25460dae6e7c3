package btreecursor

import "sync"

// maxScratch bounds the key/value scratch kept in a pool, so one huge
// value does not pin memory forever.
const maxScratch = 64 << 10

// Buf is the reusable memory of one iterator: the cursor's chunk buffer and
// scratch space for a copied key and value.
type Buf[T any] struct {
	Items    []T
	Key, Val []byte
}

// Pool recycles Bufs. The zero value is ready to use.
type Pool[T any] struct{ p sync.Pool }

// Get returns a Buf whose Items has room for a whole chunk.
func (p *Pool[T]) Get() *Buf[T] {
	if b, ok := p.p.Get().(*Buf[T]); ok {
		return b
	}
	return &Buf[T]{Items: make([]T, 0, MaxChunk)}
}

// Put returns b to the pool with items (the cursor's released buffer) as
// its chunk buffer, dropping oversized scratch.
func (p *Pool[T]) Put(b *Buf[T], items []T) {
	b.Items = items
	if cap(b.Key) > maxScratch {
		b.Key = nil
	}
	if cap(b.Val) > maxScratch {
		b.Val = nil
	}
	p.p.Put(b)
}
