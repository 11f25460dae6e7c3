package pebble

// SetLoadTableSize makes loads start a new table every n bytes, so that a
// test needs little data to write several; it returns the previous size.
func SetLoadTableSize(n int) int {
	old := loadTableSize
	loadTableSize = n
	return old
}
