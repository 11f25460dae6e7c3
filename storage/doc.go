// Package storage defines the ordered key-value engine interface that the
// metcd state machine is built on. Implementations live in sub-packages
// (storage/memory, and the durable engines), and every implementation must
// pass the conformance suite in storage/enginetest.
//
// The interface is deliberately small and about bytes: ordered keys, atomic
// write batches, bounded iteration in both directions and consistent read
// views. Revisions, watches and leases are layered on top by the callers.
package storage
