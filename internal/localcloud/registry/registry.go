// Package registry is the local stand-in for a cloud image registry (Artifact
// Registry): an OCI distribution registry served by this process on
// 127.0.0.1, from go-containerregistry's pkg/registry. Docker pushes to it
// and pulls from it without TLS, as it does for any registry on 127.0.0.0/8.
//
// It lives as long as the process that started it (a test, the local main
// job): nothing to install, nothing left running. Blobs are kept on disk
// under the directory given to Start, manifests in memory.
package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/registry"
)

// Registry is a running registry.
type Registry struct {
	// Host is its address, 127.0.0.1:<port>: images are named Host/<repo>.
	Host string

	server *http.Server
	done   chan error
}

// Start serves a registry on a free port of 127.0.0.1, its blobs under dir
// (created when missing).
func Start(dir string) (*Registry, error) {
	// The blob store writes its uploads into dir, which must exist.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("local registry: %w", err)
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("local registry: %w", err)
	}
	r := &Registry{
		Host: listener.Addr().String(),
		server: &http.Server{
			Handler: ggcr.New(
				ggcr.WithBlobHandler(ggcr.NewDiskBlobHandler(dir)),
				ggcr.Logger(log.New(io.Discard, "", 0)),
			),
			ReadHeaderTimeout: 10 * time.Second,
		},
		done: make(chan error, 1),
	}
	go func() { r.done <- r.server.Serve(listener) }()
	return r, nil
}

// Close stops serving; pushed images are gone with it.
func (r *Registry) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := r.server.Shutdown(ctx)
	if serveErr := <-r.done; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	return err
}
