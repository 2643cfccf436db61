package blob

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/herdhq/herd/internal/protocol"
)

// S3Config says where a bucket is and how to reach it. Empty fields come
// from the usual AWS environment variables (AWS_ENDPOINT_URL_S3,
// AWS_ENDPOINT_URL, AWS_REGION, AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), then ~/.aws/credentials, then an
// instance or pod role.
type S3Config struct {
	URL             string // s3://bucket/prefix
	Endpoint        string // http(s)://host:port of an S3-compatible server; empty → AWS
	Region          string // empty → us-east-1
	PresignEndpoint string // the endpoint workers reach, when it differs from Endpoint
	PartSize        int64  // multipart part size for direct uploads; 0 → 64 MiB (S3's minimum is 5 MiB)
	AccessKey       string // static credentials, when not from the environment
	SecretKey       string
}

// S3 keeps blobs as objects in a bucket, under a prefix. Each object appears
// whole or not at all; a local scratch folder holds files while they are
// hashed, before they get their key.
type S3 struct {
	c, presign *minio.Client
	bucket     string
	prefix     string // "" or "some/prefix/"
	scratch    string
	partSize   int64
	endpoint   string // http(s)://host[:port]
	region     string
	custom     bool // an S3-compatible server, not AWS: path-style requests
	creds      *credentials.Credentials
}

// ParseS3URL splits s3://bucket/prefix.
func ParseS3URL(raw string) (bucket, prefix string, err error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "s3" || u.Host == "" || u.RawQuery != "" {
		return "", "", fmt.Errorf("blob store %q: expected s3://bucket or s3://bucket/prefix", raw)
	}
	prefix = strings.Trim(u.Path, "/")
	if prefix != "" {
		if !ValidKey(prefix) {
			return "", "", fmt.Errorf("blob store %q: the prefix is not a clean path", raw)
		}
		prefix += "/"
	}
	return u.Host, prefix, nil
}

// s3Credentials is the chain of places credentials come from, or the
// static ones given.
func s3Credentials(cfg S3Config) *credentials.Credentials {
	if cfg.AccessKey != "" {
		return credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	}
	return credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{},
		&credentials.IAM{},
	})
}

func s3Client(endpoint, region string, creds *credentials.Credentials) (*minio.Client, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("S3 endpoint %q: expected http(s)://host[:port]", endpoint)
	}
	// minio-go's client follows no redirect (its CheckRedirect returns
	// http.ErrUseLastResponse), so a signed request never goes to a host
	// other than the endpoint; TestS3FollowsNoRedirect holds it to that.
	return minio.New(u.Host, &minio.Options{Creds: creds, Secure: u.Scheme == "https", Region: region})
}

// OpenS3 connects to the bucket and checks it exists. scratch is a local
// folder for files on their way in.
func OpenS3(ctx context.Context, cfg S3Config, scratch string) (*S3, error) {
	bucket, prefix, err := ParseS3URL(cfg.URL)
	if err != nil {
		return nil, err
	}
	endpoint := cmp.Or(cfg.Endpoint, "https://s3.amazonaws.com")
	region := cmp.Or(cfg.Region, "us-east-1")
	creds := s3Credentials(cfg)
	c, err := s3Client(endpoint, region, creds)
	if err != nil {
		return nil, err
	}
	pc := c
	if cfg.PresignEndpoint != "" {
		// Presigning is local arithmetic; the region is fixed so it never asks the network.
		if pc, err = s3Client(cfg.PresignEndpoint, region, creds); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(scratch, 0o750); err != nil {
		return nil, fmt.Errorf("create scratch folder: %w", err)
	}
	s := &S3{c: c, presign: pc, bucket: bucket, prefix: prefix, scratch: scratch, partSize: cmp.Or(cfg.PartSize, 64<<20),
		endpoint: endpoint, region: region, custom: cfg.Endpoint != "", creds: creds}
	if err := s.Check(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// String names the store for logs.
func (s *S3) String() string { return "s3://" + s.bucket + "/" + s.prefix }

func (s *S3) object(key string) (string, error) {
	if !ValidKey(key) {
		return "", fmt.Errorf("invalid blob key %q", key)
	}
	return s.prefix + key, nil
}

// Check verifies the bucket is reachable with the credentials given.
func (s *S3) Check(ctx context.Context) error {
	ok, err := s.c.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("S3 bucket %s at %s: %w (check the endpoint and the AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY credentials)", s.bucket, s.c.EndpointURL().Host, err)
	}
	if !ok {
		return fmt.Errorf("S3 bucket %s does not exist at %s; create it first", s.bucket, s.c.EndpointURL().Host)
	}
	return nil
}

// Create starts writing a blob; Commit uploads it.
func (s *S3) Create() (*Writer, error) {
	return newWriter(s.scratch, func(tmp, key string) error { return s.PutFile(context.Background(), key, tmp) })
}

// Adopt stores the finished file at path, whose SHA-256 and size are known,
// by uploading it at Commit; the caller removes path afterwards.
func (s *S3) Adopt(path, sum string, size int64) (*Writer, error) {
	return adopt(path, sum, size, func(file, key, _ string) error { return s.PutFile(context.Background(), key, file) })
}

// AdoptObject stores the object at blob key from, whose SHA-256 (sum) and
// size are known (an upload hashed as it arrived), without its bytes
// leaving the bucket: Commit copies it to its key; the caller removes from
// afterwards.
func (s *S3) AdoptObject(from, sum string, size int64) (*Writer, error) {
	if len(sum) != sha256.Size*2 {
		return nil, fmt.Errorf("adopt %s: no SHA-256 given", from)
	}
	if !ValidKey(from) {
		return nil, fmt.Errorf("invalid blob key %q", from)
	}
	return &Writer{n: size, sum: sum, commit: func(_, key string) error { return s.Copy(context.Background(), from, key) }}, nil
}

// Has reports whether key exists.
func (s *S3) Has(ctx context.Context, key string) (bool, error) {
	obj, err := s.object(key)
	if err != nil {
		return false, err
	}
	_, err = s.c.StatObject(ctx, s.bucket, obj, minio.StatObjectOptions{})
	if err == nil {
		return true, nil
	}
	if isNotFound(err) {
		return false, nil
	}
	return false, fmt.Errorf("stat %s: %w", key, err)
}

// isNotFound is a missing object (a missing bucket is an outage, not this).
func isNotFound(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.Code == "NoSuchKey" || (r.StatusCode == http.StatusNotFound && r.Code != "NoSuchBucket")
}

// PutFile uploads a local file as key (in parts when it is large), with the
// content type and cache policy its extension implies, so the bucket can be
// served directly.
func (s *S3) PutFile(ctx context.Context, key, file string) error {
	obj, err := s.object(key)
	if err != nil {
		return err
	}
	_, err = s.c.FPutObject(ctx, s.bucket, obj, file, minio.PutObjectOptions{ContentType: ContentType(key), CacheControl: CacheControl(key), PartSize: uint64(s.partSize)}) //nolint:gosec // G115: 64 MiB unless a caller sets a positive size
	if err != nil {
		return fmt.Errorf("upload %s: %w", key, err)
	}
	return nil
}

// PutBytes stores a small blob.
func (s *S3) PutBytes(ctx context.Context, key string, data []byte) error {
	obj, err := s.object(key)
	if err != nil {
		return err
	}
	_, err = s.c.PutObject(ctx, s.bucket, obj, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{ContentType: ContentType(key), CacheControl: CacheControl(key)})
	if err != nil {
		return fmt.Errorf("upload %s: %w", key, err)
	}
	return nil
}

// ReadBytes reads a small blob whole; ErrNotFound when it does not exist.
func (s *S3) ReadBytes(ctx context.Context, key string) ([]byte, error) {
	f, err := s.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 16<<20))
}

// GetFile downloads key into file (resuming a partial download left as
// file+".part.minio").
func (s *S3) GetFile(ctx context.Context, key, file string) error {
	obj, err := s.object(key)
	if err != nil {
		return err
	}
	if err := s.c.FGetObject(ctx, s.bucket, obj, file, minio.GetObjectOptions{}); err != nil {
		if isNotFound(err) {
			return fmt.Errorf("%s: %w", key, ErrNotFound)
		}
		return fmt.Errorf("download %s: %w", key, err)
	}
	return nil
}

// Object is an open blob: seekable (so Range requests are served lazily),
// with its size and time.
type Object interface {
	io.ReadSeekCloser
	Size() int64
	ModTime() time.Time
}

type s3Object struct {
	*minio.Object
	info minio.ObjectInfo
}

func (o s3Object) Size() int64        { return o.info.Size }
func (o s3Object) ModTime() time.Time { return o.info.LastModified }

// Open opens a blob for reading; ErrNotFound when it does not exist.
func (s *S3) Open(ctx context.Context, key string) (Object, error) {
	obj, err := s.object(key)
	if err != nil {
		return nil, err
	}
	o, err := s.c.GetObject(ctx, s.bucket, obj, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", key, err)
	}
	info, err := o.Stat()
	if err != nil {
		_ = o.Close()
		if isNotFound(err) {
			return nil, fmt.Errorf("%s: %w", key, ErrNotFound)
		}
		return nil, fmt.Errorf("open %s: %w", key, err)
	}
	return s3Object{Object: o, info: info}, nil
}

// Info is one listed blob.
type Info struct {
	Key     string // relative to the listed prefix
	Size    int64
	ModTime time.Time
}

// List returns every blob under prefix (a folder key), keys relative to it.
func (s *S3) List(ctx context.Context, prefix string) ([]Info, error) {
	obj, err := s.object(prefix)
	if err != nil {
		return nil, err
	}
	var out []Info
	for o := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: obj + "/", Recursive: true}) {
		if o.Err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, o.Err)
		}
		out = append(out, Info{Key: strings.TrimPrefix(o.Key, obj+"/"), Size: o.Size, ModTime: o.LastModified})
	}
	return out, nil
}

// Copy copies a blob inside the bucket without the bytes leaving it
// (in parts when it is over 5 GiB).
func (s *S3) Copy(ctx context.Context, from, to string) error {
	src, err := s.object(from)
	if err != nil {
		return err
	}
	dst, err := s.object(to)
	if err != nil {
		return err
	}
	_, err = s.c.ComposeObject(ctx, minio.CopyDestOptions{Bucket: s.bucket, Object: dst, ReplaceMetadata: true, UserMetadata: map[string]string{"Content-Type": ContentType(to), "Cache-Control": CacheControl(to)}},
		minio.CopySrcOptions{Bucket: s.bucket, Object: src})
	if err != nil {
		return fmt.Errorf("copy %s: %w", from, err)
	}
	return nil
}

// RemoveAll deletes key and every blob under it.
func (s *S3) RemoveAll(ctx context.Context, key string) error {
	obj, err := s.object(key)
	if err != nil {
		return err
	}
	if err := s.c.RemoveObject(ctx, s.bucket, obj, minio.RemoveObjectOptions{}); err != nil && !isNotFound(err) {
		return fmt.Errorf("remove %s: %w", key, err)
	}
	list, err := s.List(ctx, key)
	if err != nil {
		return err
	}
	objs := make(chan minio.ObjectInfo, len(list))
	for _, o := range list {
		objs <- minio.ObjectInfo{Key: obj + "/" + o.Key}
	}
	close(objs)
	var first error
	for e := range s.c.RemoveObjects(ctx, s.bucket, objs, minio.RemoveObjectsOptions{}) {
		if e.Err != nil && first == nil { // keep draining: the sender waits on this channel
			first = fmt.Errorf("remove %s: %w", e.ObjectName, e.Err)
		}
	}
	return first
}

// PresignGet returns a URL that reads key without credentials until ttl passes.
func (s *S3) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error) {
	obj, err := s.object(key)
	if err != nil {
		return "", err
	}
	u, err := s.presign.PresignedGetObject(ctx, s.bucket, obj, ttl, nil)
	if err != nil {
		return "", fmt.Errorf("presign %s: %w", key, err)
	}
	return u.String(), nil
}

// PlanUpload presigns the requests that put size bytes at key: one PUT for a
// small file, a multipart upload (parts of PartSize) for a large one. The
// plan goes to a worker as it is, so its shape is the worker protocol's.
func (s *S3) PlanUpload(ctx context.Context, key string, size int64, ttl time.Duration) (protocol.DirectUpload, error) {
	obj, err := s.object(key)
	if err != nil {
		return protocol.DirectUpload{}, err
	}
	if size < 0 || size > 5<<40 {
		return protocol.DirectUpload{}, fmt.Errorf("%s: %d bytes is more than an S3 object can hold (5 TiB)", key, size)
	}
	// Each URL signs the Content-Length of its request: the store refuses
	// a body of any other size, so a worker can write no more than it
	// declared (and the server allowed).
	length := func(n int64) http.Header { return http.Header{"Content-Length": {strconv.FormatInt(n, 10)}} }
	if size <= s.partSize {
		u, err := s.presign.PresignHeader(ctx, http.MethodPut, s.bucket, obj, ttl, nil, length(size))
		if err != nil {
			return protocol.DirectUpload{}, fmt.Errorf("presign %s: %w", key, err)
		}
		return protocol.DirectUpload{Parts: []protocol.Part{{Number: 1, Size: size, URL: u.String()}}}, nil
	}
	core := minio.Core{Client: s.c}
	id, err := core.NewMultipartUpload(ctx, s.bucket, obj, minio.PutObjectOptions{ContentType: ContentType(key), CacheControl: CacheControl(key)})
	if err != nil {
		return protocol.DirectUpload{}, fmt.Errorf("start upload of %s: %w", key, err)
	}
	up := protocol.DirectUpload{UploadID: id}
	partSize := max(s.partSize, (size+9999)/10000) // S3 allows 10,000 parts
	for off, n := int64(0), 1; off < size; off, n = off+partSize, n+1 {
		q := url.Values{"partNumber": {strconv.Itoa(n)}, "uploadId": {id}}
		n64 := min(partSize, size-off)
		u, err := s.presign.PresignHeader(ctx, http.MethodPut, s.bucket, obj, ttl, q, length(n64))
		if err != nil {
			return protocol.DirectUpload{}, fmt.Errorf("presign %s: %w", key, err)
		}
		up.Parts = append(up.Parts, protocol.Part{Number: n, Offset: off, Size: n64, URL: u.String()})
	}
	return up, nil
}

// FinishUpload completes a multipart upload with the parts' ETags (a no-op
// for a single PUT) and checks the object has the size the worker sent.
func (s *S3) FinishUpload(ctx context.Context, key string, up protocol.DirectUpload, size int64) error {
	obj, err := s.object(key)
	if err != nil {
		return err
	}
	if up.UploadID != "" {
		parts := make([]minio.CompletePart, 0, len(up.Parts))
		for _, p := range up.Parts {
			if p.ETag == "" {
				return fmt.Errorf("%s: part %d has no ETag; upload it first", key, p.Number)
			}
			parts = append(parts, minio.CompletePart{PartNumber: p.Number, ETag: p.ETag})
		}
		core := minio.Core{Client: s.c}
		if _, err := core.CompleteMultipartUpload(ctx, s.bucket, obj, up.UploadID, parts, minio.PutObjectOptions{}); err != nil {
			// Asked again after a lost answer: the object is there already.
			if minio.ToErrorResponse(err).Code != "NoSuchUpload" {
				return fmt.Errorf("complete upload of %s: %w", key, err)
			}
		}
	}
	info, err := s.c.StatObject(ctx, s.bucket, obj, minio.StatObjectOptions{})
	if err != nil {
		return fmt.Errorf("%s has not arrived: %w", key, err)
	}
	if info.Size != size {
		return fmt.Errorf("%s arrived with %d bytes, want %d; upload it again", key, info.Size, size)
	}
	return nil
}
