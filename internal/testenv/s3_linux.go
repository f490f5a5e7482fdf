package testenv

import "syscall"

// versityProcAttr makes the kernel kill versitygw when the test process
// dies, so a crashed or interrupted test run leaves no server behind.
func versityProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
