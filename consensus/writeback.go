package consensus

import "os"

// writebackChunk is how much written data writebackWriter lets pile up
// before it asks the kernel to start writing it back.
const writebackChunk = 4 << 20

// writebackWriter writes to f and, every writebackChunk bytes, starts the
// writeback of what it wrote since the last time, without waiting for it
// (startWriteback; a no-op where the system has no such call). The final
// fsync then finds little left to write.
type writebackWriter struct {
	f       *os.File
	off     int64 // bytes written
	started int64 // bytes whose writeback was started
}

func (w *writebackWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if err == nil && w.off-w.started >= writebackChunk {
		// Only a hint: a failure shows again in the final fsync.
		_ = startWriteback(w.f, w.started, w.off-w.started)
		w.started = w.off
	}
	return n, err
}
