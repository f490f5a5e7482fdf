// Package s3 stores blobs in an S3-compatible bucket through the AWS SDK
// for Go v2. Uploads and downloads use presigned URLs, so clients send
// bytes to the bucket directly.
package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/botaserver/bota/internal/blob"
)

// DefaultRegion is the region used when neither the URL nor the SDK's
// configuration (AWS_REGION, profile) names one.
const DefaultRegion = "us-east-1"

// maxPresignExpiry is the longest lifetime of a SigV4 presigned URL.
const maxPresignExpiry = 7 * 24 * time.Hour

// Config configures a Store.
type Config struct {
	// URL names the bucket: s3://bucket?endpoint=URL&region=NAME&prefix=P.
	// The optional endpoint is the base URL of an S3-compatible server and
	// turns on path-style addressing. The region defaults to the SDK's
	// configured region, else DefaultRegion. The optional prefix is put in
	// front of every key, with a '/' added if it has none at its end.
	// Credentials never come from the URL but from the SDK's usual sources
	// (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, profiles, roles).
	URL string
	// Logger receives events; nil means slog.Default().
	Logger *slog.Logger
}

// Store is a blob.Store on an S3 bucket. It does not implement
// blob.PrefixSigner, because an S3 presigned URL covers one key.
type Store struct {
	client  *s3.Client
	presign *s3.PresignClient
	bucket  string
	prefix  string
	region  string
	// plainHTTP is set when the endpoint is http://, which changes how Put
	// signs its body.
	plainHTTP bool
	log       *slog.Logger
}

var _ blob.Store = (*Store)(nil)

// location is the parsed form of Config.URL.
type location struct {
	bucket   string
	endpoint string
	region   string
	prefix   string
}

// parseURL parses an s3:// storage URL.
func parseURL(raw string) (location, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return location{}, fmt.Errorf("invalid storage URL: %w", err)
	}
	if u.Scheme != "s3" {
		return location{}, fmt.Errorf("storage URL scheme is %q, not s3", u.Scheme)
	}
	if u.User != nil {
		return location{}, errors.New("storage URL must not contain credentials; " +
			"set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead")
	}
	if u.Host == "" {
		return location{}, errors.New("storage URL has no bucket name (s3://BUCKET)")
	}
	if u.Path != "" && u.Path != "/" {
		return location{}, fmt.Errorf("storage URL has the path %q; "+
			"use the prefix query parameter for a key prefix", u.Path)
	}

	q := u.Query()
	if err := checkURLQuery(q); err != nil {
		return location{}, err
	}
	loc := location{
		bucket:   u.Host,
		endpoint: q.Get("endpoint"),
		region:   q.Get("region"),
		prefix:   strings.TrimPrefix(q.Get("prefix"), "/"),
	}

	if loc.endpoint != "" {
		e, err := url.Parse(loc.endpoint)
		if err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" {
			return location{}, fmt.Errorf("storage URL endpoint %q is not an http or https URL",
				loc.endpoint)
		}
	}
	if loc.prefix != "" && !strings.HasSuffix(loc.prefix, "/") {
		loc.prefix += "/"
	}
	return loc, nil
}

// checkURLQuery rejects unknown and repeated parameters, so that a typo
// in a parameter name does not silently fall back to a default.
func checkURLQuery(q url.Values) error {
	for name, values := range q {
		switch name {
		case "endpoint", "region", "prefix":
		default:
			return fmt.Errorf("storage URL has the unknown parameter %q "+
				"(known: endpoint, region, prefix)", name)
		}
		if len(values) > 1 {
			return fmt.Errorf("storage URL repeats the parameter %q", name)
		}
	}
	return nil
}

// New returns a Store for cfg.URL. It does not contact the server; call
// CreateBucketIfMissing to check the bucket.
func New(ctx context.Context, cfg Config) (*Store, error) {
	loc, err := parseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}

	var opts []func(*config.LoadOptions) error
	if loc.region != "" {
		opts = append(opts, config.WithRegion(loc.region))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3: load AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = DefaultRegion
	}

	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if loc.endpoint != "" {
			o.BaseEndpoint = aws.String(loc.endpoint)
			// S3-compatible servers rarely have a DNS name per bucket.
			o.UsePathStyle = true
		}
	})
	return &Store{
		client:    client,
		presign:   s3.NewPresignClient(client),
		bucket:    loc.bucket,
		prefix:    loc.prefix,
		region:    awsCfg.Region,
		plainHTTP: strings.HasPrefix(loc.endpoint, "http://"),
		log:       logger,
	}, nil
}

// Bucket returns the bucket name.
func (s *Store) Bucket() string { return s.bucket }

// CreateBucketIfMissing creates the bucket unless it exists already.
func (s *Store) CreateBucketIfMissing(ctx context.Context) error {
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket})
	if err == nil {
		return nil
	}
	if !isNotFound(err) {
		return fmt.Errorf("s3: check bucket %q: %w", s.bucket, err)
	}

	in := &s3.CreateBucketInput{Bucket: &s.bucket}
	// us-east-1 is the one region that rejects an explicit location.
	if s.region != DefaultRegion {
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{
			LocationConstraint: types.BucketLocationConstraint(s.region),
		}
	}
	_, err = s.client.CreateBucket(ctx, in)
	var owned *types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		return fmt.Errorf("s3: create bucket %q: %w", s.bucket, err)
	}
	s.log.Info("BlobBucketCreated", "bucket", s.bucket, "region", s.region)
	return nil
}

// PresignPut returns a presigned PUT URL whose signature covers the
// Content-Type and Content-Length headers, so the server rejects any other
// type or length.
func (s *Store) PresignPut(ctx context.Context, key string, opts blob.PutOptions) (blob.SignedURL, error) {
	if key == "" {
		return blob.SignedURL{}, errors.New("s3: presign put: empty key")
	}
	if opts.ContentType == "" {
		return blob.SignedURL{}, fmt.Errorf("s3: presign put %q: empty content type", key)
	}
	if opts.ContentLength < 0 {
		return blob.SignedURL{}, fmt.Errorf("s3: presign put %q: negative content length %d",
			key, opts.ContentLength)
	}
	ttl, err := presignTTL(opts.Expires)
	if err != nil {
		return blob.SignedURL{}, fmt.Errorf("s3: presign put %q: %w", key, err)
	}
	req, err := s.presign.PresignPutObject(ctx, &s3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           aws.String(s.prefix + key),
		ContentType:   aws.String(opts.ContentType),
		ContentLength: aws.Int64(opts.ContentLength),
	}, s3.WithPresignExpires(ttl))
	if err != nil {
		return blob.SignedURL{}, fmt.Errorf("s3: presign put %q: %w", key, err)
	}
	return blob.SignedURL{
		URL:     req.URL,
		Headers: clientHeaders(req.SignedHeader),
		Expires: opts.Expires,
	}, nil
}

// PresignGet returns a presigned GET URL for key.
func (s *Store) PresignGet(ctx context.Context, key string, expires time.Time) (blob.SignedURL, error) {
	if key == "" {
		return blob.SignedURL{}, errors.New("s3: presign get: empty key")
	}
	ttl, err := presignTTL(expires)
	if err != nil {
		return blob.SignedURL{}, fmt.Errorf("s3: presign get %q: %w", key, err)
	}
	req, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{
		Bucket: &s.bucket,
		Key:    aws.String(s.prefix + key),
	}, s3.WithPresignExpires(ttl))
	if err != nil {
		return blob.SignedURL{}, fmt.Errorf("s3: presign get %q: %w", key, err)
	}
	return blob.SignedURL{
		URL:     req.URL,
		Headers: clientHeaders(req.SignedHeader),
		Expires: expires,
	}, nil
}

// presignTTL turns an expiry time into a SigV4 lifetime, rounded up to a
// whole second (the unit of X-Amz-Expires).
func presignTTL(expires time.Time) (time.Duration, error) {
	ttl := time.Until(expires)
	if ttl <= 0 {
		return 0, fmt.Errorf("expiry %s is not in the future", expires.UTC().Format(time.RFC3339))
	}
	ttl = ttl.Truncate(time.Second) + time.Second
	if ttl > maxPresignExpiry {
		return 0, fmt.Errorf("expiry %s is more than 7 days away, the SigV4 maximum",
			expires.UTC().Format(time.RFC3339))
	}
	return ttl, nil
}

// clientHeaders returns the signed headers a client must send itself:
// all but Host and Content-Length, which every HTTP client sets.
func clientHeaders(signed http.Header) map[string]string {
	headers := map[string]string{}
	for name, values := range signed {
		switch http.CanonicalHeaderKey(name) {
		case "Host", "Content-Length":
			continue
		}
		if len(values) > 0 {
			headers[http.CanonicalHeaderKey(name)] = values[0]
		}
	}
	return headers
}

// Stat returns the size and modification time of key (HeadObject).
func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: &s.bucket,
		Key:    aws.String(s.prefix + key),
	})
	if err != nil {
		return blob.Info{}, s.wrap("stat", key, err)
	}
	return blob.Info{
		Key:     key,
		Size:    aws.ToInt64(out.ContentLength),
		ModTime: aws.ToTime(out.LastModified),
	}, nil
}

// Open streams key (GetObject). The caller closes the reader.
func (s *Store) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: &s.bucket,
		Key:    aws.String(s.prefix + key),
	})
	if err != nil {
		return nil, s.wrap("open", key, err)
	}
	return out.Body, nil
}

// Put streams size bytes from r to key in one PutObject. S3 makes the
// object visible only when the request completes.
// NOTE: one PutObject takes at most 5 GiB; larger objects would need a
// multipart upload, which this store does not do.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64,
	contentType string) error {
	if size < 0 {
		return fmt.Errorf("s3: put %q: negative size %d", key, size)
	}
	var optFns []func(*s3.Options)
	if s.plainHTTP {
		// Over plain HTTP the SDK neither sends a trailing checksum nor
		// hashes a body it cannot rewind, so the body goes as
		// UNSIGNED-PAYLOAD; exactReader and Content-Length still make a
		// short body fail.
		optFns = append(optFns, func(o *s3.Options) {
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			o.APIOptions = append(o.APIOptions,
				v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
		})
	}
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           aws.String(s.prefix + key),
		Body:          &exactReader{r: r, remaining: size},
		ContentLength: aws.Int64(size),
		ContentType:   aws.String(contentType),
	}, optFns...)
	if err != nil {
		return s.wrap("put", key, err)
	}
	s.log.Debug("BlobStored", "key", key, "size", size)
	return nil
}

// Delete removes key. S3 reports success for a missing key too.
func (s *Store) Delete(ctx context.Context, key string) error {
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: &s.bucket,
		Key:    aws.String(s.prefix + key),
	})
	if err != nil && !isNotFound(err) {
		return s.wrap("delete", key, err)
	}
	return nil
}

// List returns the objects whose keys start with prefix, sorted by key,
// reading every page of ListObjectsV2.
func (s *Store) List(ctx context.Context, prefix string) ([]blob.Info, error) {
	var infos []blob.Info
	pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: &s.bucket,
		Prefix: aws.String(s.prefix + prefix),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, s.wrap("list", prefix, err)
		}
		for _, obj := range page.Contents {
			infos = append(infos, blob.Info{
				Key:     strings.TrimPrefix(aws.ToString(obj.Key), s.prefix),
				Size:    aws.ToInt64(obj.Size),
				ModTime: aws.ToTime(obj.LastModified),
			})
		}
	}
	// S3 already returns keys in UTF-8 byte order; sorting again keeps the
	// promise for servers that do not.
	slices.SortFunc(infos, func(a, b blob.Info) int { return strings.Compare(a.Key, b.Key) })
	return infos, nil
}

// wrap adds the operation and key to err, mapping a missing object to
// blob.ErrNotFound.
func (s *Store) wrap(op, key string, err error) error {
	if isNotFound(err) {
		return fmt.Errorf("s3: %s %q: %w", op, key, blob.ErrNotFound)
	}
	return fmt.Errorf("s3: %s %q: %w", op, key, err)
}

// isNotFound reports whether err is a missing object or bucket: HeadObject
// returns a bare 404 (NotFound) because a HEAD response has no body.
func isNotFound(err error) bool {
	var noKey *types.NoSuchKey
	var notFound *types.NotFound
	if errors.As(err, &noKey) || errors.As(err, &notFound) {
		return true
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "NoSuchKey", "NotFound", "NoSuchBucket":
			return true
		}
	}
	var respErr *awshttp.ResponseError
	return errors.As(err, &respErr) && respErr.HTTPStatusCode() == http.StatusNotFound
}

// exactReader passes through exactly remaining bytes and fails if r ends
// early or has more, so a wrong-sized body never becomes an object.
type exactReader struct {
	r         io.Reader
	remaining int64
	checked   bool
}

var errBodyTooLong = errors.New("s3: put: body is longer than its declared size")

func (e *exactReader) Read(p []byte) (int, error) {
	if e.remaining == 0 {
		if !e.checked {
			e.checked = true
			if err := e.checkEnd(); err != nil {
				return 0, err
			}
		}
		return 0, io.EOF
	}
	if int64(len(p)) > e.remaining {
		p = p[:e.remaining]
	}
	n, err := e.r.Read(p)
	e.remaining -= int64(n)
	if e.remaining == 0 && n > 0 {
		// Check for extra bytes before handing over the last ones: with the
		// whole body sent, the server could store the object before the
		// error stops the request. Holding back one byte makes it fail.
		e.checked = true
		if err := e.checkEnd(); err != nil {
			return n - 1, err
		}
		return n, nil
	}
	if err == io.EOF {
		return n, fmt.Errorf("s3: put: body ended %d bytes early: %w",
			e.remaining, io.ErrUnexpectedEOF)
	}
	return n, err
}

// checkEnd returns nil when r is at its end.
func (e *exactReader) checkEnd() error {
	var one [1]byte
	for {
		n, err := e.r.Read(one[:])
		if n > 0 {
			return errBodyTooLong
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
