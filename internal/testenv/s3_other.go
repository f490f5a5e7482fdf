//go:build !linux

package testenv

import "syscall"

// versityProcAttr returns nil: only Linux can tie the server's life to
// the test process, so elsewhere StopAll must run to stop it.
func versityProcAttr() *syscall.SysProcAttr {
	return nil
}
