package blob_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/herdhq/herd/internal/blob"
)

// TestS3FollowsNoRedirect: a store endpoint that redirects (a misconfigured
// proxy, a hostile endpoint) never gets the client to send a signed request,
// with its credentials' signature, to another host: minio-go's client
// follows no redirect, and this holds herd to that should it ever change.
func TestS3FollowsNoRedirect(t *testing.T) {
	t.Parallel()
	var reached, redirected atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	defer other.Close()
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead && (r.URL.Path == "/media/" || r.URL.Path == "/media") {
			w.WriteHeader(http.StatusOK) // the bucket exists
			return
		}
		redirected.Add(1)
		http.Redirect(w, r, other.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	defer front.Close()
	s, err := blob.OpenS3(context.Background(), blob.S3Config{URL: "s3://media/herd", Endpoint: front.URL, Region: "us-east-1",
		AccessKey: "key", SecretKey: "secret-secret"}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutBytes(context.Background(), "jobs/j1/out/a.txt", []byte("hello")); err == nil {
		t.Error("an upload that was redirected succeeded")
	}
	if _, err := s.ReadBytes(context.Background(), "jobs/j1/out/a.txt"); err == nil {
		t.Error("a download that was redirected succeeded")
	}
	if redirected.Load() == 0 {
		t.Fatal("nothing was redirected")
	}
	if n := reached.Load(); n != 0 {
		t.Errorf("%d requests reached the other host", n)
	}
}
