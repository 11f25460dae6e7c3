// Package e2e holds the multi-process end-to-end tests and benchmarks of
// metcd.
//
// The tests build the real binary (go build ./cmd/metcd) once in TestMain,
// then start members as separate processes on free loopback ports with
// temporary data directories, and talk to them only through the public HTTP
// API and process signals: nothing in this package imports the server's
// packages.
//
// Run the suite (it takes a few minutes on a 2-core machine):
//
//	go test ./tests/e2e/ -count=1 -v -timeout 15m
//
// Run the benchmark (three members, PUT and linearizable GET, sequential and
// with 64 concurrent clients; reports req/s, p50-ms and p99-ms):
//
//	go test ./tests/e2e/ -run '^$' -bench BenchmarkCluster -benchtime 3s
//
// Environment:
//
//	METCD_E2E_BIN   use this pre-built metcd binary instead of building one
//
// Each member's stderr and stdout go to a log file in the test's temporary
// directory; when a test fails, the tail of every member's log is printed
// with the test output.
package e2e
