package chaos

import "syscall"

// procAttr makes a member die with the harness (a killed test leaves no
// stray processes).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
