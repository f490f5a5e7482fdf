package disk

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path"
	"sync"
	"syscall"
)

// copyBufferSize is the size of the buffers each write streams through,
// copyBuffersPerWrite of them, so memory per upload stays the same
// whatever the object size.
const (
	copyBufferSize      = 256 << 10
	copyBuffersPerWrite = 3
)

// writebackEvery is how many bytes of an upload may wait in memory before
// their writeback to disk starts (see startWriteback).
const writebackEvery = 8 << 20

var copyBuffers = sync.Pool{New: func() any {
	b := make([]byte, copyBufferSize)
	return &b
}}

// errBodyTooShort is returned when the reader ends before size bytes.
var errBodyTooShort = errors.New("body is shorter than its declared size")

// errBodyTooLong is returned when the reader has more than size bytes.
var errBodyTooLong = errors.New("body is longer than its declared size")

// write streams exactly size bytes from r into a temp file, fsyncs it
// (unless Config.NoSync is set), then commits it under key.
func (s *Store) write(ctx context.Context, key string, r io.Reader, size int64,
	contentType string) (err error) {
	name := "put-" + rand.Text()
	s.active.Store(name, struct{}{})
	defer s.active.Delete(name)

	tmpName := path.Join(tmpDir, name)
	f, err := s.root.OpenFile(tmpName, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("create temp file: %w", err)
	}
	committed := false
	defer func() {
		if committed {
			return
		}
		if f != nil {
			_ = f.Close()
		}
		if rmErr := s.root.Remove(tmpName); rmErr != nil {
			s.log.Error("BlobTempRemoveFailed", "key", key, "error", rmErr)
		}
	}()

	var bufs [copyBuffersPerWrite][]byte
	for i := range bufs {
		bufp := copyBuffers.Get().(*[]byte)
		defer copyBuffers.Put(bufp)
		bufs[i] = *bufp
	}
	// Reading one byte past size distinguishes a body of the right length
	// from a longer one.
	src := io.LimitReader(contextReader{ctx: ctx, r: r}, size+1)
	digest := sha256.New()
	n, err := copyToFile(f, digest, src, bufs[:])
	if err != nil {
		return fmt.Errorf("write temp file after %d bytes: %w", n, err)
	}
	if n < size {
		return fmt.Errorf("%w: %d of %d bytes", errBodyTooShort, n, size)
	}
	if n > size {
		return fmt.Errorf("%w of %d bytes", errBodyTooLong, size)
	}
	// The content type and digest go on the file itself when the file
	// system allows, so that one fsync and one rename make them durable
	// together with the bytes. Otherwise sideMeta goes to a meta file.
	sideMeta := contentType + "\n" + hex.EncodeToString(digest.Sum(nil))
	if !s.noAttrs.Load() {
		switch err := setMetaAttr(f, sideMeta); {
		case err == nil:
			sideMeta = ""
		case errors.Is(err, errors.ErrUnsupported):
			s.noAttrs.Store(true)
			s.log.Info("BlobAttributesUnsupported", "dir", s.dir)
		default:
			return fmt.Errorf("store content type on temp file: %w", err)
		}
	}
	if err := s.syncUpload(f); err != nil {
		return fmt.Errorf("sync temp file: %w", err)
	}
	closeErr := f.Close()
	f = nil
	if closeErr != nil {
		return fmt.Errorf("close temp file: %w", closeErr)
	}

	if err := s.commit(key, tmpName, sideMeta); err != nil {
		return err
	}
	committed = true
	return nil
}

// commit renames the temp file to objects/<key> and fsyncs its directory
// (unless Config.NoSync is set) so the rename survives a crash. A
// non-empty sideMeta (the content type
// and SHA-256, when the file system keeps no attributes) goes to
// meta/<key> first.
func (s *Store) commit(key, tmpName, sideMeta string) error {
	lock := s.commitLock(key)
	lock.Lock()
	defer lock.Unlock()

	objectName := path.Join(objectsDir, key)
	dirs := []string{path.Dir(objectName)}
	if sideMeta != "" {
		dirs = append(dirs, path.Dir(path.Join(metaDir, key)))
	}
	// NOTE: only the innermost folder is fsynced, not the parents that
	// MkdirAll may create. Journaling file systems such as ext4 and XFS
	// commit those entries with it, but POSIX does not promise that.
	for _, dir := range dirs {
		if err := s.root.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("create directory %s: %w", dir, err)
		}
	}
	if sideMeta != "" {
		if err := s.writeMeta(path.Join(metaDir, key), sideMeta); err != nil {
			return err
		}
	} else if err := s.root.Remove(path.Join(metaDir, key)); err != nil &&
		!errors.Is(err, fs.ErrNotExist) && !isNotDir(err) {
		// A meta file left by an earlier write of the key would speak for
		// the new bytes wherever the attribute is lost (a copy without
		// extended attributes).
		return fmt.Errorf("remove old meta file: %w", err)
	}
	if err := s.root.Rename(tmpName, objectName); err != nil {
		return fmt.Errorf("rename temp file into place: %w", err)
	}
	for _, dir := range dirs {
		if err := s.syncUploadDir(dir); err != nil {
			return fmt.Errorf("sync directory %s: %w", dir, err)
		}
	}
	return nil
}

// writeMeta replaces metaName with meta (the content type, a newline and
// the hex SHA-256) through its own temp file, so a reader never sees a
// half-written file.
func (s *Store) writeMeta(metaName, meta string) error {
	tmpName := path.Join(tmpDir, "meta-"+rand.Text())
	f, err := s.root.OpenFile(tmpName, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("create content type file: %w", err)
	}
	_, err = io.WriteString(f, meta+"\n")
	if err == nil {
		err = s.syncUpload(f)
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = s.root.Rename(tmpName, metaName)
	}
	if err != nil {
		_ = s.root.Remove(tmpName)
		return fmt.Errorf("write content type file: %w", err)
	}
	return nil
}

// syncUpload fsyncs f, a file of an upload, unless Config.NoSync is set.
func (s *Store) syncUpload(f *os.File) error {
	if s.noSync {
		return nil
	}
	return f.Sync()
}

// syncUploadDir fsyncs dir, a folder an upload was renamed into, unless
// Config.NoSync is set.
func (s *Store) syncUploadDir(dir string) error {
	if s.noSync {
		return nil
	}
	return s.syncDir(dir)
}

// syncDir fsyncs the folder dir.
func (s *Store) syncDir(dir string) error {
	d, err := s.root.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if closeErr := d.Close(); err == nil {
		err = closeErr
	}
	return err
}

func (s *Store) commitLock(key string) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return &s.commitLocks[h.Sum32()%uint32(len(s.commitLocks))]
}

// isNotDir reports whether err is ENOTDIR: a path component is a file.
func isNotDir(err error) bool {
	return errors.Is(err, syscall.ENOTDIR)
}

// copyToFile copies src to f through bufs, hashing every byte into
// digest. The hashing runs in a goroutine of its own, a buffer behind the
// file writes, so that it uses another core while the next bytes arrive.
// Every writebackEvery bytes it starts their writeback to the disk.
// io.CopyBuffer would not do: it hands the copy to (*os.File).ReadFrom,
// which bypasses both the digest and the fixed buffers.
func copyToFile(f *os.File, digest io.Writer, src io.Reader, bufs [][]byte) (int64, error) {
	free := make(chan []byte, len(bufs))
	for _, b := range bufs {
		free <- b
	}
	hash := make(chan []byte, len(bufs))
	hashed := make(chan struct{})
	go func() {
		defer close(hashed)
		for b := range hash {
			digest.Write(b)
			free <- b[:cap(b)]
		}
	}()
	defer func() {
		close(hash)
		<-hashed
	}()

	var written, flushed int64
	for {
		buf := <-free
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := f.Write(buf[:nr])
			written += int64(nw)
			if werr != nil {
				return written, werr
			}
			hash <- buf[:nr]
			if written-flushed >= writebackEvery {
				startWriteback(f, flushed, written-flushed)
				flushed = written
			}
		} else {
			free <- buf
		}
		if rerr == io.EOF {
			return written, nil
		}
		if rerr != nil {
			return written, rerr
		}
	}
}

// contextReader stops reading once ctx is done.
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (c contextReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
