package pebble

// SetLoadTableSize makes loads start a new table every n bytes, so that a
// test needs little data to write several; it returns the previous size.
func SetLoadTableSize(n int) int {
	old := loadTableSize
	loadTableSize = n
	return old
}

// FilterHits returns how many table reads the engine's filters have
// spared so far: lookups a filter answered "not in this table".
func FilterHits(e *Engine) int64 { return e.db.Metrics().Filter.Hits }

// Flush writes the memtable out as a table in L0 and waits for it.
func Flush(e *Engine) error { return e.db.Flush() }
