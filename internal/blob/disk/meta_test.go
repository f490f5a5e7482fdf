package disk_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// attrsSupported reports whether the file system of dir keeps user
// extended attributes.
func attrsSupported(t *testing.T, dir string) bool {
	t.Helper()
	probe := filepath.Join(dir, "attr-probe")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(probe)
	return unix.Setxattr(probe, "user.probe", []byte("1"), 0) == nil
}

func TestDigestTravelsWithObject(t *testing.T) {
	srv := newServer(t, 0)
	ctx := context.Background()
	data := bytes.Repeat([]byte("speech "), 1000)
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	// A content type of the maximum length leaves room for the digest.
	longType := "audio/" + strings.Repeat("x", 249)
	for key, contentType := range map[string]string{testKey: "audio/wav", "proj/rec/long.wav": longType} {
		if err := srv.store.Put(ctx, key, bytes.NewReader(data), int64(len(data)), contentType); err != nil {
			t.Fatalf("Put %s: %v", key, err)
		}
		info, err := srv.store.Stat(ctx, key)
		if err != nil {
			t.Fatalf("Stat %s: %v", key, err)
		}
		if info.SHA256 != want {
			t.Errorf("%s: SHA256 = %q, want %q", key, info.SHA256, want)
		}
	}

	// With attributes the object is one file: nothing under meta/.
	metaFile := filepath.Join(srv.dir, "meta", filepath.FromSlash(testKey))
	_, err := os.Stat(metaFile)
	switch {
	case attrsSupported(t, srv.dir) && !errors.Is(err, fs.ErrNotExist):
		t.Errorf("meta file %s exists (err %v); the digest belongs on the object", metaFile, err)
	case !attrsSupported(t, srv.dir) && err != nil:
		t.Errorf("no attributes on this file system and no meta file: %v", err)
	}
}

// Objects stored by a server that kept meta files still report their
// content type and digest.
func TestMetaFileStillRead(t *testing.T) {
	srv := newServer(t, 0)
	ctx := context.Background()
	const key = "proj/rec/old.wav"
	data := []byte("older object")
	for name, content := range map[string][]byte{
		filepath.Join(srv.dir, "objects", filepath.FromSlash(key)): data,
		filepath.Join(srv.dir, "meta", filepath.FromSlash(key)):    []byte("audio/x-old\nabc123\n"),
	} {
		if err := os.MkdirAll(filepath.Dir(name), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, content, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	info, err := srv.store.Stat(ctx, key)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if info.SHA256 != "abc123" || info.Size != int64(len(data)) {
		t.Errorf("Stat = %+v, want SHA256 abc123 and size %d", info, len(data))
	}
}

// Writing a key again removes the meta file an earlier write left, so a
// copy of the folder that loses the attributes cannot show old digests.
func TestRewriteDropsOldMetaFile(t *testing.T) {
	srv := newServer(t, 0)
	if !attrsSupported(t, srv.dir) {
		t.Skip("the file system keeps no user extended attributes")
	}
	ctx := context.Background()
	metaFile := filepath.Join(srv.dir, "meta", filepath.FromSlash(testKey))
	if err := os.MkdirAll(filepath.Dir(metaFile), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(metaFile, []byte("audio/x-old\nabc123\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	data := []byte("new bytes")
	if err := srv.store.Put(ctx, testKey, bytes.NewReader(data), int64(len(data)), "audio/wav"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if _, err := os.Stat(metaFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("old meta file still there after a new write (err %v)", err)
	}
	info, err := srv.store.Stat(ctx, testKey)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	sum := sha256.Sum256(data)
	if want := hex.EncodeToString(sum[:]); info.SHA256 != want {
		t.Errorf("SHA256 = %q, want %q", info.SHA256, want)
	}
}
