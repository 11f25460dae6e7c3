//go:build linux

package e2e

import "syscall"

// procAttr makes every member die with the test process, so that a test
// binary killed by -timeout leaves no metcd processes behind.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
