package dvc

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"

	"cloud.google.com/go/storage"
)

// Fetcher copies outputs' objects from one remote. A Cloud Storage client is
// made on the first fetch only, so a run that fetches nothing (a preview, a
// no-op up) neither looks for credentials nor sends a request.
type Fetcher struct {
	Remote Remote

	once   sync.Once
	client *storage.Client
	err    error
}

// NewFetcher returns a Fetcher for remote.
func NewFetcher(remote Remote) *Fetcher { return &Fetcher{Remote: remote} }

// Fetch writes o's object to w, verifying its MD5 and size as it goes. An
// object that is missing, of another size or of another MD5 is an error of
// one line naming the remote, the object's path and the hash; w may then
// hold part of it, which the caller discards.
//
// MD5 is the hash for both layouts: DVC 3's "md5" is the MD5 of the bytes,
// and DVC 2's "md5-dos2unix" is too for a binary file such as an ONNX model
// (DVC 2 only rewrote line endings of text files before hashing).
func (f *Fetcher) Fetch(ctx context.Context, o Output, w io.Writer) error {
	src, err := f.open(ctx, o)
	if err != nil {
		return err
	}
	defer src.Close()
	sum := md5.New()
	// One byte more than recorded, to tell a longer object.
	n, err := io.Copy(io.MultiWriter(w, sum), io.LimitReader(src, o.Size+1))
	if err != nil {
		return fmt.Errorf("dvc remote %q: reading %s (md5 %s): %s", f.Remote.Name, f.Remote.ObjectURL(o), o.MD5, oneLine(err))
	}
	if got := hex.EncodeToString(sum.Sum(nil)); n != o.Size || got != o.MD5 {
		size := fmt.Sprintf("%d bytes", n)
		if n > o.Size {
			size = fmt.Sprintf("more than %d bytes", o.Size)
		}
		return fmt.Errorf("dvc remote %q: %s is not the recorded model: %s with md5 %s, but %s records md5 %s, %d bytes; refusing to build from it (dvc push the model again from a checkout that has it)",
			f.Remote.Name, f.Remote.ObjectURL(o), size, got, o.RecordedIn, o.MD5, o.Size)
	}
	return nil
}

// open opens o's object on the remote.
func (f *Fetcher) open(ctx context.Context, o Output) (io.ReadCloser, error) {
	missing := func(error) error {
		return fmt.Errorf("dvc remote %q: %s does not exist: the model (md5 %s, recorded in %s) was not pushed; run dvc push from the checkout that made it",
			f.Remote.Name, f.Remote.ObjectURL(o), o.MD5, o.RecordedIn)
	}
	if !f.Remote.IsGCS() {
		file, err := os.Open(f.Remote.ObjectURL(o))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, missing(err)
		}
		if err != nil {
			return nil, fmt.Errorf("dvc remote %q: %w", f.Remote.Name, err)
		}
		return file, nil
	}
	client, err := f.storageClient(ctx)
	if err != nil {
		return nil, err
	}
	r, err := client.Bucket(f.Remote.Bucket).Object(f.Remote.objectName(o)).NewReader(ctx)
	if errors.Is(err, storage.ErrObjectNotExist) || errors.Is(err, storage.ErrBucketNotExist) {
		return nil, missing(err)
	}
	if err != nil {
		return nil, fmt.Errorf("dvc remote %q: reading %s (md5 %s): %s", f.Remote.Name, f.Remote.ObjectURL(o), o.MD5, oneLine(err))
	}
	return r, nil
}

// storageClient makes the Cloud Storage client once, with Application
// Default Credentials: what google-github-actions/auth and GitLab's
// Workload Identity Federation set up, or `gcloud auth application-default
// login` on a workstation. Nothing of them reaches the state. The client
// honours STORAGE_EMULATOR_HOST (then it sends no credentials), which the
// tests point at a Cloud Storage server on 127.0.0.1.
func (f *Fetcher) storageClient(ctx context.Context) (*storage.Client, error) {
	f.once.Do(func() {
		// JSON API reads (GET .../o/<object>?alt=media): the API the
		// Cloud Storage server of the tests implements, and IAM checks
		// the same storage.objects.get either way.
		f.client, f.err = storage.NewClient(ctx, storage.WithJSONReads())
		if f.err != nil {
			f.err = fmt.Errorf("dvc remote %q (%s): no Cloud Storage client: %s; expected Application Default Credentials of an identity that may read the bucket (roles/storage.objectViewer)", f.Remote.Name, f.Remote.URL, oneLine(f.err))
		}
	})
	return f.client, f.err
}

// Close releases the Cloud Storage client, if one was made.
func (f *Fetcher) Close() error {
	if f.client != nil {
		return f.client.Close()
	}
	return nil
}

// oneLine is err's text on one line: the client's errors may carry an
// HTTP response body.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
