package simulate

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// contentTypes maps the audio file extensions the simulator uploads to
// the content types the API accepts.
var contentTypes = map[string]string{
	".opus": "audio/opus",
	".ogg":  "audio/ogg",
	".wav":  "audio/wav",
	".mp3":  "audio/mpeg",
	".m4a":  "audio/mp4",
	".flac": "audio/flac",
	".webm": "audio/webm",
	".aac":  "audio/aac",
}

// audioFile is one audio file a device uploads.
type audioFile struct {
	Path        string
	ContentType string
	Size        int64
	// SHA256 is the lowercase hex digest of the file's bytes.
	SHA256 string
}

// ContentType returns the API content type for an audio file name, or ""
// when its extension is not one the simulator uploads.
func ContentType(name string) string {
	return contentTypes[strings.ToLower(filepath.Ext(name))]
}

// FindAudio lists the audio files directly inside dir (extensions .opus,
// .ogg, .wav, .mp3, .m4a, .flac, .webm and .aac), sorted by name.
func FindAudio(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read audio folder: %w", err)
	}
	var paths []string
	for _, e := range entries {
		if e.Type().IsRegular() && ContentType(e.Name()) != "" {
			paths = append(paths, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(paths)
	if len(paths) == 0 {
		return nil, fmt.Errorf("no audio files (.opus .ogg .wav .mp3 .m4a .flac .webm .aac) in %s", dir)
	}
	return paths, nil
}

// loadFile reads a file's size and SHA-256 by streaming it once.
func loadFile(path string) (audioFile, error) {
	ct := ContentType(path)
	if ct == "" {
		return audioFile{}, fmt.Errorf("%s: extension is not one of "+
			".opus .ogg .wav .mp3 .m4a .flac .webm .aac", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return audioFile{}, fmt.Errorf("open audio file: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return audioFile{}, fmt.Errorf("hash %s: %w", path, err)
	}
	if n == 0 {
		return audioFile{}, fmt.Errorf("%s is empty; the API accepts only non-empty uploads", path)
	}
	return audioFile{Path: path, ContentType: ct, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}
