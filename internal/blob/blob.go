// Package blob stores recording media. Uploads and downloads go straight to
// the store through signed URLs, so the API process never buffers a file.
package blob

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotFound is returned when an object does not exist.
var ErrNotFound = errors.New("blob: object not found")

// Store is the interface every back end implements.
type Store interface {
	// PresignPut returns a URL that accepts one PUT of exactly
	// opts.ContentLength bytes of opts.ContentType to key until opts.Expires.
	PresignPut(ctx context.Context, key string, opts PutOptions) (SignedURL, error)
	// PresignGet returns a URL that serves key until expires.
	PresignGet(ctx context.Context, key string, expires time.Time) (SignedURL, error)
	// Stat returns the size of the object at key, or ErrNotFound.
	Stat(ctx context.Context, key string) (Info, error)
	// Open streams the object at key, or returns ErrNotFound.
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	// Put writes an object from the server side (stitched streams). The
	// object appears under key only once it is complete.
	Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error
	// Delete removes the object at key; a missing object is not an error.
	Delete(ctx context.Context, key string) error
	// List returns the objects whose keys start with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]Info, error)
}

// PrefixSigner is implemented by stores that can sign one URL template for
// any object under a prefix (the local disk store). Stores without it need
// one presigned URL per object.
type PrefixSigner interface {
	// PresignPutPrefix returns a URL template containing placeholder that
	// accepts PUTs of objects named prefix+<value>+suffix until expires,
	// each at most maxSize bytes of contentType.
	PresignPutPrefix(ctx context.Context, prefix, placeholder, suffix, contentType string, maxSize int64, expires time.Time) (SignedURL, error)
}

// PutOptions are the bindings of a presigned PUT.
type PutOptions struct {
	ContentType string
	// ContentLength is the exact length the PUT must have; 0 leaves the
	// length unbound, up to the store's maximum object size.
	ContentLength int64
	Expires       time.Time
}

// SignedURL is an absolute URL and the headers the client must send with it.
type SignedURL struct {
	URL     string
	Headers map[string]string
	Expires time.Time
}

// Info describes a stored object.
type Info struct {
	Key     string
	Size    int64
	ModTime time.Time
	// SHA256 is the hex digest of the bytes when the store computed it
	// while writing; empty when it did not.
	SHA256 string
}

// LocalPather is implemented by stores whose objects are files on this
// machine, so that callers can read them in place.
type LocalPather interface {
	LocalPath(ctx context.Context, key string) (string, error)
}

// Sealer is implemented by stores that can reject further signed PUTs to a
// key before the URL expires. Stores without it (S3) accept PUTs until the
// presigned URL expires.
type Sealer interface {
	Seal(ctx context.Context, key string) error
}
