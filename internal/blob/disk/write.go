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
	"os"
	"path"
	"sync"
	"syscall"
)

// copyBufferSize is the size of the one buffer each write streams through,
// so memory per upload stays the same whatever the object size.
const copyBufferSize = 256 << 10

var copyBuffers = sync.Pool{New: func() any {
	b := make([]byte, copyBufferSize)
	return &b
}}

// errBodyTooShort is returned when the reader ends before size bytes.
var errBodyTooShort = errors.New("body is shorter than its declared size")

// errBodyTooLong is returned when the reader has more than size bytes.
var errBodyTooLong = errors.New("body is longer than its declared size")

// write streams exactly size bytes from r into a temp file, fsyncs it, then
// commits it under key.
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

	bufp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bufp)
	// Reading one byte past size distinguishes a body of the right length
	// from a longer one. The writer is wrapped so that io.CopyBuffer uses the fixed
	// buffer instead of (*os.File).ReadFrom.
	src := io.LimitReader(contextReader{ctx: ctx, r: r}, size+1)
	digest := sha256.New()
	n, err := io.CopyBuffer(writerOnly{io.MultiWriter(f, digest)}, src, *bufp)
	if err != nil {
		return fmt.Errorf("write temp file after %d bytes: %w", n, err)
	}
	if n < size {
		return fmt.Errorf("%w: %d of %d bytes", errBodyTooShort, n, size)
	}
	if n > size {
		return fmt.Errorf("%w of %d bytes", errBodyTooLong, size)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync temp file: %w", err)
	}
	closeErr := f.Close()
	f = nil
	if closeErr != nil {
		return fmt.Errorf("close temp file: %w", closeErr)
	}

	if err := s.commit(key, tmpName, contentType, hex.EncodeToString(digest.Sum(nil))); err != nil {
		return err
	}
	committed = true
	return nil
}

// commit writes the content type and SHA-256 to meta/<key>, renames the
// temp file to objects/<key> and fsyncs both directories so the rename
// survives a crash.
func (s *Store) commit(key, tmpName, contentType, sha256Hex string) error {
	lock := s.commitLock(key)
	lock.Lock()
	defer lock.Unlock()

	objectName := path.Join(objectsDir, key)
	metaName := path.Join(metaDir, key)
	for _, dir := range []string{path.Dir(objectName), path.Dir(metaName)} {
		if err := s.root.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("create directory %s: %w", dir, err)
		}
	}
	if err := s.writeMeta(metaName, contentType+"\n"+sha256Hex); err != nil {
		return err
	}
	if err := s.root.Rename(tmpName, objectName); err != nil {
		return fmt.Errorf("rename temp file into place: %w", err)
	}
	for _, dir := range []string{path.Dir(objectName), path.Dir(metaName)} {
		if err := s.syncDir(dir); err != nil {
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
		err = f.Sync()
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

// writerOnly hides every method of an io.Writer but Write.
type writerOnly struct{ w io.Writer }

func (w writerOnly) Write(p []byte) (int, error) { return w.w.Write(p) }

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
