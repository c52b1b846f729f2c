// Package fakegcs runs a real implementation of the Cloud Storage JSON API
// (github.com/fsouza/fake-gcs-server, in-process) on 127.0.0.1 for tests,
// and counts the requests it answers. The Cloud Storage Go client is
// pointed at it through STORAGE_EMULATOR_HOST, the client's own switch.
// Only tests import it.
package fakegcs

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"
)

// EmulatorHostEnv is the variable the Cloud Storage client reads.
const EmulatorHostEnv = "STORAGE_EMULATOR_HOST"

// Server is a Cloud Storage server on 127.0.0.1.
type Server struct {
	fake     *fakestorage.Server
	requests atomic.Int64
}

// Start starts a server holding no bucket and points the Cloud Storage
// client at it for the rest of the test; it stops with the test.
func Start(t testing.TB) *Server {
	t.Helper()
	fake, err := fakestorage.NewServerWithOptions(fakestorage.Options{NoListener: true})
	if err != nil {
		t.Fatalf("fake-gcs-server: %v", err)
	}
	s := &Server{fake: fake}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	handler := fake.HTTPHandler()
	srv := &httptest.Server{Listener: listener, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		handler.ServeHTTP(w, r)
	})}}
	srv.Start()
	t.Cleanup(func() { srv.Close(); fake.Stop() })
	t.Setenv(EmulatorHostEnv, listener.Addr().String())
	return s
}

// NoServer points the Cloud Storage client at a port of 127.0.0.1 where
// nothing listens, for the rest of the test: any request would fail.
func NoServer(t testing.TB) {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := listener.Addr().String()
	listener.Close()
	t.Setenv(EmulatorHostEnv, addr)
}

// Put stores an object, creating its bucket if needed.
func (s *Server) Put(bucket, name string, content []byte) {
	s.fake.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: bucket, Name: name}, Content: content})
}

// Requests is how many requests the server has answered.
func (s *Server) Requests() int64 { return s.requests.Load() }
