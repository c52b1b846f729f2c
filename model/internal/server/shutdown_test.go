package server_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/planets-mlops/deploy/model/internal/classifier"
	"github.com/planets-mlops/deploy/model/internal/server"
	"github.com/planets-mlops/deploy/model/internal/testruntime"
)

// slowModel makes each prediction take a while, so that requests are
// certainly in flight when the shutdown starts, and counts the predictions
// made: the requests the server took on.
type slowModel struct {
	server.Predictor
	delay     time.Duration
	predicted *atomic.Int64
}

func (m slowModel) Predict(ctx context.Context, input []float32) (classifier.Prediction, error) {
	m.predicted.Add(1)
	time.Sleep(m.delay)
	return m.Predictor.Predict(ctx, input)
}

// TestGracefulShutdown drives load through a shutdown. The server's promise:
// readiness turns false first while predictions are still served, and every
// request it has read is answered, through the drain and the grace period.
// A request it had not read when the listener closed (a connection still in
// the backlog, or accepted but not yet read) is never processed and its
// client sees a transport error; retrying it is safe. So: every prediction
// made must reach its client as a 200, and every failure must be a
// transport error, never an HTTP error.
func TestGracefulShutdown(t *testing.T) {
	model := testruntime.LoadModel(t, 2)
	var predicted atomic.Int64
	srv := server.New(testLimits, quietLog)
	defer srv.Close() // Serve closes it after a clean shutdown; this is for the failures
	srv.SetModel(slowModel{Predictor: model, delay: 5 * time.Millisecond, predicted: &predicted})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- srv.Serve(ctx, ln, server.Timeouts{
			ReadHeader: time.Second, Read: 5 * time.Second, Write: 5 * time.Second, Idle: 30 * time.Second,
			DrainDelay: 400 * time.Millisecond, ShutdownGrace: 5 * time.Second,
		})
	}()

	image := testruntime.LoadParity(t).Images[0].Data
	var ok, okAfterStop, transportErrors, httpErrors atomic.Int64
	var stopped atomic.Bool
	var firstHTTPError atomic.Value
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				resp, err := client.Post(url+"/predict", "image/jpeg", bytes.NewReader(image))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				switch {
				case err == nil && resp.StatusCode == http.StatusOK:
					ok.Add(1)
					if stopped.Load() {
						okAfterStop.Add(1)
					}
					continue
				case err != nil:
					transportErrors.Add(1)
				default:
					httpErrors.Add(1)
					firstHTTPError.CompareAndSwap(nil, resp.Status)
				}
				if stopped.Load() {
					return // the server is gone: stop this client
				}
			}
		})
	}

	time.Sleep(300 * time.Millisecond) // steady load
	stopped.Store(true)
	stop() // what SIGTERM does in main
	// Readiness turns false at once, while predictions are still answered.
	time.Sleep(50 * time.Millisecond)
	resp, err := http.Get(url + "/readyz")
	if err != nil {
		t.Fatalf("/readyz during the drain: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz during the drain: %d, want 503", resp.StatusCode)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the shutdown")
	}
	wg.Wait()
	t.Logf("predictions %d, answered 200 %d (after SIGTERM %d), transport errors %d, HTTP errors %d",
		predicted.Load(), ok.Load(), okAfterStop.Load(), transportErrors.Load(), httpErrors.Load())
	if predicted.Load() != ok.Load() {
		t.Errorf("%d requests were processed but only %d answered 200: a request the server took on was dropped", predicted.Load(), ok.Load())
	}
	if httpErrors.Load() != 0 {
		t.Errorf("%d requests got an HTTP error; first: %v", httpErrors.Load(), firstHTTPError.Load())
	}
	if okAfterStop.Load() == 0 {
		t.Error("no request was served after the shutdown began; the drain did not happen")
	}
	if ok.Load() < 50 {
		t.Errorf("only %d requests succeeded: the load was too light to mean anything", ok.Load())
	}
}
