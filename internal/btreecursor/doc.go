// Package btreecursor pulls items out of a github.com/google/btree BTreeG
// one at a time, within optional key bounds and in either direction.
//
// The btree only offers push-style walks, so a Cursor collects items in
// chunks: each refill walks the tree from just past the last item it
// returned. Chunks start small because most ranges are short, and double
// up to MaxChunk so long scans pay one O(log n) descent per MaxChunk
// items. The tree must not be written while a Cursor walks it; callers
// walk a frozen clone.
//
// The item type is generic; the caller supplies how to get an item's key
// and how to build a search probe from a key, consistent with the tree's
// ordering (bytes.Compare on keys).
//
// Pool recycles an iterator's chunk buffer and key/value scratch space.
package btreecursor
