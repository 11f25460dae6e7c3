// Package freeport hands out free TCP ports on 127.0.0.1 for the members
// that tests, the chaos harness and the benchmark tools start. A port is
// free when handed out; another process may still take it before the
// member binds it, which the member then reports.
package freeport
