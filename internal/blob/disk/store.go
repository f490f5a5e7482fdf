// Package disk stores blobs in a local directory and serves signed upload
// and download URLs on the server's own /uploads/ path.
//
// The directory holds three trees: objects/<key> (the bytes), meta/<key>
// (the content type, one line) and tmp/ (uploads in progress). An object
// appears under its key only by a rename of a complete, fsynced temp file,
// so a crash never leaves part of an object under its final name. With
// Config.NoSync that holds for a killed process, but after a power cut the
// rename may survive without all of the bytes.
package disk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/botaserver/bota/internal/blob"
)

// DefaultMaxSize is the object size limit when Config.MaxSize is 0.
const DefaultMaxSize = 2 << 30

// minSecretLen is the shortest accepted signing secret (128 bits).
const minSecretLen = 16

// Folder names inside Config.Dir.
const (
	objectsDir = "objects"
	metaDir    = "meta"
	tmpDir     = "tmp"
)

// Config configures a Store.
type Config struct {
	// Dir is the root directory; it is created if missing.
	Dir string
	// PublicURL is the absolute base URL of the server, such as
	// http://127.0.0.1:8080, without a trailing slash. Signed URLs are
	// PublicURL + "/uploads/" + key.
	PublicURL string
	// Secret signs the URLs. It must be at least 16 bytes long and shared
	// by every server that serves the same Dir.
	Secret []byte
	// MaxSize is the largest object in bytes; 0 means DefaultMaxSize.
	MaxSize int64
	// Logger receives events; nil means slog.Default().
	Logger *slog.Logger
	// NoSync leaves files and folders to the kernel's writeback instead
	// of fsyncing them before a write returns. A killed process still
	// loses nothing; a power cut or kernel crash may lose recent writes.
	NoSync bool
}

// Store is a blob.Store and blob.PrefixSigner on a local directory.
type Store struct {
	root      *os.Root
	dir       string
	publicURL string
	secret    []byte
	maxSize   int64
	log       *slog.Logger
	noSync    bool

	// commitLocks serialize the commit step of writes to the same key, so
	// that the content type in meta/ always belongs to the object beside it.
	commitLocks [64]sync.Mutex

	// active holds the names of temp files being written, which SweepTemp
	// leaves alone whatever their age.
	active sync.Map
	// noAttrs is set once the file system refused an extended attribute;
	// content types and digests then go to meta files.
	noAttrs atomic.Bool
}

var (
	_ blob.Store        = (*Store)(nil)
	_ blob.PrefixSigner = (*Store)(nil)
	_ blob.LocalPather  = (*Store)(nil)
	_ blob.Sealer       = (*Store)(nil)
)

// New opens (and creates if needed) the store in cfg.Dir.
func New(cfg Config) (*Store, error) {
	if cfg.Dir == "" {
		return nil, errors.New("disk: Dir is empty")
	}
	if err := validatePublicURL(cfg.PublicURL); err != nil {
		return nil, err
	}
	if len(cfg.Secret) < minSecretLen {
		return nil, fmt.Errorf("disk: Secret is %d bytes long; at least %d are required",
			len(cfg.Secret), minSecretLen)
	}
	if cfg.MaxSize < 0 {
		return nil, fmt.Errorf("disk: MaxSize %d is negative", cfg.MaxSize)
	}
	if cfg.MaxSize == 0 {
		cfg.MaxSize = DefaultMaxSize
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}

	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("disk: create %s: %w", cfg.Dir, err)
	}
	root, err := os.OpenRoot(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("disk: open %s: %w", cfg.Dir, err)
	}
	for _, dir := range []string{objectsDir, metaDir, tmpDir} {
		if err := root.MkdirAll(dir, 0o750); err != nil {
			_ = root.Close()
			return nil, fmt.Errorf("disk: create %s in %s: %w", dir, cfg.Dir, err)
		}
	}

	abs, err := filepath.Abs(cfg.Dir)
	if err != nil {
		_ = root.Close()
		return nil, fmt.Errorf("disk: resolve %s: %w", cfg.Dir, err)
	}
	return &Store{
		root:      root,
		dir:       abs,
		publicURL: cfg.PublicURL,
		secret:    slices.Clone(cfg.Secret),
		maxSize:   cfg.MaxSize,
		log:       cfg.Logger,
		noSync:    cfg.NoSync,
	}, nil
}

func validatePublicURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("disk: invalid PublicURL %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("disk: PublicURL %q is not an absolute http or https URL", raw)
	}
	if strings.HasSuffix(raw, "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("disk: PublicURL %q must have no trailing slash, query or fragment", raw)
	}
	return nil
}

// Close releases the directory handle. The store must not be used after.
func (s *Store) Close() error {
	if err := s.root.Close(); err != nil {
		return fmt.Errorf("disk: close: %w", err)
	}
	return nil
}

// Stat returns the size and modification time of the object at key.
func (s *Store) Stat(_ context.Context, key string) (blob.Info, error) {
	f, fi, err := s.openObject("stat", key)
	if err != nil {
		return blob.Info{}, err
	}
	defer f.Close()
	_, sum := s.meta(key, f)
	return blob.Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime(), SHA256: sum}, nil
}

// Open returns the object at key as an *os.File.
func (s *Store) Open(_ context.Context, key string) (io.ReadCloser, error) {
	f, _, err := s.openObject("open", key)
	return f, err
}

// openObject opens the object at key and checks it is a regular file. op
// names the operation in errors.
func (s *Store) openObject(op, key string) (*os.File, fs.FileInfo, error) {
	if err := validateKey(key); err != nil {
		return nil, nil, fmt.Errorf("disk: %s %q: %w", op, key, err)
	}
	f, err := s.root.Open(path.Join(objectsDir, key))
	if err != nil {
		return nil, nil, s.mapNotFound(op, key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, nil, fmt.Errorf("disk: %s %q: %w", op, key, err)
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, nil, fmt.Errorf("disk: %s %q: %w", op, key, blob.ErrNotFound)
	}
	return f, fi, nil
}

// meta returns the content type and hex SHA-256 stored with the object
// key, open as f: in the file's attribute, or in its meta file when the
// file system keeps no attributes. The content type defaults to
// application/octet-stream, and objects written before the digest was kept
// have an empty digest.
func (s *Store) meta(key string, f *os.File) (contentType, sha256Hex string) {
	raw, ok := metaAttrOf(f)
	if !ok {
		b, err := s.root.ReadFile(path.Join(metaDir, key))
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				s.log.Warn("BlobMetaReadFailed", "key", key, "error", err)
			}
			return "application/octet-stream", ""
		}
		raw = string(b)
	}
	first, rest, _ := strings.Cut(raw, "\n")
	return strings.TrimSpace(first), strings.TrimSpace(rest)
}

// LocalPath returns the file that holds the object at key, so callers on
// this machine can read it in place.
func (s *Store) LocalPath(_ context.Context, key string) (string, error) {
	if _, err := s.Stat(context.Background(), key); err != nil {
		return "", err
	}
	return filepath.Join(s.dir, objectsDir, filepath.FromSlash(key)), nil
}

// mapNotFound turns "does not exist" and "is not a directory" (a file
// where the key expects a directory) into blob.ErrNotFound.
func (s *Store) mapNotFound(op, key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || isNotDir(err) {
		return fmt.Errorf("disk: %s %q: %w", op, key, blob.ErrNotFound)
	}
	return fmt.Errorf("disk: %s %q: %w", op, key, err)
}

// Put writes size bytes from r to key. The object appears only once all
// bytes are on disk. A reader that ends early or has more than size bytes
// leaves no object, and Put returns an error.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64,
	contentType string) error {
	if err := validateKey(key); err != nil {
		return fmt.Errorf("disk: put %q: %w", key, err)
	}
	if err := validateContentType(contentType); err != nil {
		return fmt.Errorf("disk: put %q: %w", key, err)
	}
	if size < 0 || size > s.maxSize {
		return fmt.Errorf("disk: put %q: size %d is outside 0 to %d", key, size, s.maxSize)
	}
	if err := s.write(ctx, key, r, size, contentType); err != nil {
		return fmt.Errorf("disk: put %q: %w", key, err)
	}
	return nil
}

// Delete removes the object at key and its content type, and seals the key
// so an upload URL still valid cannot store it again. A missing object
// is not an error.
func (s *Store) Delete(_ context.Context, key string) error {
	if err := validateKey(key); err != nil {
		return fmt.Errorf("disk: delete %q: %w", key, err)
	}
	lock := s.commitLock(key)
	lock.Lock()
	defer lock.Unlock()

	// NOTE: empty parent directories stay behind; removing them would race
	// with a concurrent write that has just created them.
	for _, dir := range []string{objectsDir, metaDir} {
		err := s.root.Remove(path.Join(dir, key))
		if err != nil && !errors.Is(err, fs.ErrNotExist) && !isNotDir(err) {
			return fmt.Errorf("disk: delete %q: %w", key, err)
		}
	}
	if err := s.syncDir(path.Join(objectsDir, path.Dir(key))); err != nil &&
		!errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("disk: delete %q: %w", key, err)
	}
	return s.Seal(context.Background(), key)
}

// List returns the objects whose keys start with prefix, sorted by key
// in byte order (the order S3 uses).
func (s *Store) List(ctx context.Context, prefix string) ([]blob.Info, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("disk: list: %w", err)
	}
	// Walk only the deepest directory that the prefix names in full.
	start := objectsDir
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = path.Join(objectsDir, prefix[:i])
	}

	var infos []blob.Info
	fsys := s.root.FS()
	err := fs.WalkDir(fsys, start, func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			if name == start && (errors.Is(err, fs.ErrNotExist) || isNotDir(err)) {
				return fs.SkipAll
			}
			return err
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		if !d.Type().IsRegular() {
			return nil
		}
		key := strings.TrimPrefix(name, objectsDir+"/")
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted during the walk
		}
		if err != nil {
			return err
		}
		infos = append(infos, blob.Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("disk: list %q: %w", prefix, err)
	}
	slices.SortFunc(infos, func(a, b blob.Info) int { return strings.Compare(a.Key, b.Key) })
	return infos, nil
}

// SweepTemp removes temp files of uploads that were not finished (the
// process died, or a client cut the connection during a crash) and were
// last written more than olderThan ago. Temp files that this Store is
// still writing are kept whatever their age. It returns how many files it
// removed.
func (s *Store) SweepTemp(olderThan time.Duration) (int, error) {
	entries, err := fs.ReadDir(s.root.FS(), tmpDir)
	if err != nil {
		return 0, fmt.Errorf("disk: sweep temp: %w", err)
	}
	cutoff := time.Now().Add(-olderThan)
	removed := 0
	var errs []error
	for _, e := range entries {
		if _, busy := s.active.Load(e.Name()); busy {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !fi.Mode().IsRegular() || !fi.ModTime().Before(cutoff) {
			continue
		}
		err = s.root.Remove(path.Join(tmpDir, e.Name()))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	seals, err := s.sweepSeals()
	if err != nil {
		errs = append(errs, err)
	}
	if removed > 0 || seals > 0 {
		s.log.Info("BlobTempSwept", "removed", removed, "seals_removed", seals, "older_than", olderThan)
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("disk: sweep temp: %w", err)
	}
	return removed, nil
}

// validateContentType accepts a non-empty header value without control
// characters, so it can be stored on one line and sent back as a header.
func validateContentType(ct string) error {
	if ct == "" {
		return errors.New("content type is empty")
	}
	if len(ct) > 255 {
		return errors.New("content type is longer than 255 bytes")
	}
	for i := 0; i < len(ct); i++ {
		if ct[i] < 0x20 || ct[i] == 0x7f {
			return fmt.Errorf("content type %q contains a control character", ct)
		}
	}
	return nil
}
