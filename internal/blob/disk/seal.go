package disk

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"time"
)

// sealedDir holds one empty marker file per sealed key.
const sealedDir = "sealed"

// sealLifetime is how long a seal is kept: longer than any URL the store
// signs (upload URLs live 1 hour, chunk templates 24 hours), after which
// the URLs it guards have expired anyway.
const sealLifetime = 48 * time.Hour

// Seal makes the store reject further signed PUTs to key. upload-complete
// seals verified media, so a still-valid upload URL cannot replace them,
// and Delete seals what it removes, so an old URL cannot bring it back.
func (s *Store) Seal(_ context.Context, key string) error {
	if err := validateKey(key); err != nil {
		return fmt.Errorf("disk: seal %q: %w", key, err)
	}
	name := path.Join(sealedDir, key)
	if err := s.root.MkdirAll(path.Dir(name), 0o750); err != nil {
		return fmt.Errorf("disk: seal %q: %w", key, err)
	}
	f, err := s.root.OpenFile(name, os.O_WRONLY|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("disk: seal %q: %w", key, err)
	}
	// A seal is synced even with Config.NoSync: a lost seal would let a
	// still-valid URL replace verified bytes or bring deleted ones back.
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("disk: seal %q: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("disk: seal %q: %w", key, err)
	}
	return s.syncDir(path.Dir(name))
}

// sealed reports whether key was sealed.
func (s *Store) sealed(key string) bool {
	_, err := s.root.Stat(path.Join(sealedDir, key))
	return err == nil
}

// sweepSeals removes seals older than sealLifetime.
func (s *Store) sweepSeals() (int, error) {
	cutoff := time.Now().Add(-sealLifetime)
	removed := 0
	err := fs.WalkDir(s.root.FS(), sealedDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil || !fi.ModTime().Before(cutoff) {
			return nil
		}
		if err := s.root.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		removed++
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	return removed, err
}
