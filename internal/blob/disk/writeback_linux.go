package disk

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback starts the kernel's writeback of the n bytes of f at off,
// without waiting for it. Otherwise the kernel may keep a large upload in
// memory until the closing fsync. Started as the bytes arrive, the disk
// works while the rest comes in, and the fsync has little left to write.
// Without fsyncs (Config.NoSync) it still keeps a large upload from
// accumulating in memory as dirty pages.
func startWriteback(f *os.File, off, n int64) {
	// A failure only loses the head start, because the fsync, when there
	// is one, still writes the bytes and reports its own errors.
	_ = withFD(f, func(fd int) error {
		return unix.SyncFileRange(fd, off, n, unix.SYNC_FILE_RANGE_WRITE)
	})
}
