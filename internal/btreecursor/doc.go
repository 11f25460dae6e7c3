// Package btreecursor holds what the memory engine and the overlay's
// pending writes share about their github.com/tidwall/btree trees: a
// Cursor that walks a frozen tree one item at a time, within optional key
// bounds and in either direction; the Scratch that iterators copy keys and
// values into; and the path Hints that make runs of ascending writes cheap.
//
// The item type is generic; the caller supplies how to get an item's key
// and how to build a search probe from a key, consistent with the tree's
// ordering (bytes.Compare on keys). The tree must not be written while a
// Cursor walks it: callers walk a Copy.
package btreecursor
