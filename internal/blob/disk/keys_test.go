package disk

import (
	"path"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateKey(t *testing.T) {
	valid := []string{
		"proj_x/rec_y/med_z/audio.opus", "a", "a.b-c_D/9", "...", ".hidden/x",
		strings.Repeat("a", 255),
	}
	for _, key := range valid {
		if err := validateKey(key); err != nil {
			t.Errorf("validateKey(%q): %v", key, err)
		}
	}
	invalid := []string{
		"", "/a", "a/", "a//b", ".", "..", "a/./b", "a/../b", "../a", `a\b`, "a\x00b",
		"a b", "a%2Fb", "a?b", "a#b", "é", strings.Repeat("a", 256),
		strings.Repeat("a/", 512) + "a",
	}
	for _, key := range invalid {
		if err := validateKey(key); err == nil {
			t.Errorf("validateKey(%q): no error", key)
		}
	}
}

// FuzzValidateKey checks that every accepted key is a clean, local,
// relative path that stays inside the store's directory.
func FuzzValidateKey(f *testing.F) {
	for _, seed := range []string{"proj_x/rec_y/a.opus", "../x", "a/..", "a//b", `a\b`, "..."} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if validateKey(key) != nil {
			return
		}
		if path.Clean(key) != key {
			t.Errorf("accepted %q, which cleans to %q", key, path.Clean(key))
		}
		if !filepath.IsLocal(key) {
			t.Errorf("accepted %q, which is not a local path", key)
		}
		if strings.ContainsAny(key, "\\\x00%") {
			t.Errorf("accepted %q with an unsafe byte", key)
		}
	})
}

func TestSignatureCoversEveryField(t *testing.T) {
	secret := []byte("0123456789abcdef")
	base := signature{kind: kindObject, method: "PUT", key: "a/b", contentType: "audio/opus",
		size: 10, expires: 1700000000}
	encoded := base.encode(secret)
	if !base.verify(secret, encoded) {
		t.Fatalf("signature does not verify against its own fields")
	}
	changed := map[string]signature{}
	for name, change := range map[string]func(*signature){
		"kind":        func(s *signature) { s.kind = kindPrefix },
		"method":      func(s *signature) { s.method = "GET" },
		"key":         func(s *signature) { s.key = "a/c" },
		"suffix":      func(s *signature) { s.suffix = ".opus" },
		"contentType": func(s *signature) { s.contentType = "audio/wav" },
		"size":        func(s *signature) { s.size = 11 },
		"expires":     func(s *signature) { s.expires++ },
		// Moving bytes between fields must not give the same input.
		"boundary": func(s *signature) { s.key = "a/"; s.suffix = "b" },
	} {
		sig := base
		change(&sig)
		changed[name] = sig
	}
	for name, sig := range changed {
		if sig.verify(secret, encoded) {
			t.Errorf("changing %s keeps the signature valid", name)
		}
	}
	if base.verify([]byte("another secret!!"), encoded) {
		t.Errorf("signature verifies under another secret")
	}
	if base.verify(secret, encoded[:len(encoded)-1]) {
		t.Errorf("truncated signature verifies")
	}
}
