// Package enginetest is the conformance suite every storage.Engine must
// pass, and a shared set of benchmarks so engines can be compared on equal
// terms. An engine's test package calls Run and Bench with a Factory:
//
//	var factory = enginetest.Factory{
//		Name: "bolt",
//		Open: func(t testing.TB, dir string) storage.Engine { ... },
//	}
//
//	func TestEngine(t *testing.T)      { enginetest.Run(t, factory) }
//	func BenchmarkEngine(b *testing.B) { enginetest.Bench(b, factory) }
//
// The suite checks only what the storage package documents: ordering,
// bounds, atomic batches, snapshot isolation, slice ownership, ErrNotFound
// and ErrClosed, and, for durable engines, that data survives a reopen and
// a SIGKILL without ever exposing part of a batch. The crash test re-runs
// the test binary on itself, so no TestMain is needed.
package enginetest
