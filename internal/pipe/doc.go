// Package pipe is io.Pipe with a buffer: the writer runs ahead of the
// reader by up to a fixed number of bytes instead of waiting for each read.
// metcd serializes its state (a snapshot for a peer, a state file, a backup)
// on one goroutine while another sends or saves the bytes; with io.Pipe the
// two take turns, with this pipe they overlap.
package pipe
