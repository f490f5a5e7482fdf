package disk

import (
	"errors"
	"fmt"
	"strings"
)

// maxKeyLen matches the S3 limit on key length, so a key that works here
// also works with the S3 store.
const maxKeyLen = 1024

// maxSegmentLen is the usual file-name limit of Linux file systems.
const maxSegmentLen = 255

var errEmptyKey = errors.New("empty key")

// validateKey checks that key is one or more segments of [A-Za-z0-9._-]
// joined by '/', with no "." or ".." segment. Such a key can be used as a
// relative file name as it is and never leaves the store's directory.
func validateKey(key string) error {
	if key == "" {
		return errEmptyKey
	}
	if len(key) > maxKeyLen {
		return fmt.Errorf("key is %d bytes long, more than the maximum of %d", len(key), maxKeyLen)
	}
	for segment := range strings.SplitSeq(key, "/") {
		if err := validateSegment(segment); err != nil {
			return err
		}
	}
	return nil
}

func validateSegment(segment string) error {
	switch {
	case segment == "":
		return errors.New("key has an empty segment (leading, trailing or double '/')")
	case segment == "." || segment == "..":
		return fmt.Errorf("key has a %q segment", segment)
	case len(segment) > maxSegmentLen:
		return fmt.Errorf("key segment is longer than %d bytes", maxSegmentLen)
	}
	for i := 0; i < len(segment); i++ {
		if !isKeyByte(segment[i]) {
			return fmt.Errorf("key contains the byte %q; only A-Z, a-z, 0-9, '.', '_', '-' "+
				"and '/' are allowed", segment[i])
		}
	}
	return nil
}

func isKeyByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '-'
}

// validatePrefix checks a List or prefix-signature prefix: the empty string,
// or the start of a valid key, possibly ending in '/' or in a partial
// segment.
func validatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	// A prefix followed by one more safe byte must form a valid key, which
	// rejects complete "." and ".." segments, "//", a leading '/' and every
	// unsafe byte.
	if err := validateKey(prefix + "x"); err != nil {
		return fmt.Errorf("invalid prefix %q: %w", prefix, err)
	}
	return nil
}
