package disk

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// metaAttr is the extended attribute that contains an object's content type
// and SHA-256, in the format of a meta file.
const metaAttr = "user.bota.meta"

// withFD runs fn on f's descriptor.
func withFD(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var fnErr error
	if err := rc.Control(func(fd uintptr) { fnErr = fn(int(fd)) }); err != nil {
		return err
	}
	return fnErr
}

// setMetaAttr stores meta on the open file f. It fails with
// errors.ErrUnsupported when the file system keeps no user attributes.
func setMetaAttr(f *os.File, meta string) error {
	err := withFD(f, func(fd int) error { return unix.Fsetxattr(fd, metaAttr, []byte(meta), 0) })
	if errors.Is(err, unix.ENOTSUP) {
		return errors.ErrUnsupported
	}
	return err
}

// metaAttrOf returns the meta stored on f, or ok false when it has none.
func metaAttrOf(f *os.File) (meta string, ok bool) {
	// The longest meta is a 255-byte content type, a newline and 64 hex
	// digits.
	buf := make([]byte, 512)
	var n int
	err := withFD(f, func(fd int) error {
		var err error
		n, err = unix.Fgetxattr(fd, metaAttr, buf)
		return err
	})
	if err != nil || n > len(buf) {
		return "", false
	}
	return string(buf[:n]), true
}
