package server_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/planets-mlops/deploy/model/internal/classifier"
	"github.com/planets-mlops/deploy/model/internal/server"
	"github.com/planets-mlops/deploy/model/internal/testruntime"
)

// slowModel makes each prediction take a while, so that requests are
// certainly in flight when the shutdown starts.
type slowModel struct {
	server.Predictor
	delay time.Duration
}

func (m slowModel) Predict(ctx context.Context, input []float32) (classifier.Prediction, error) {
	time.Sleep(m.delay)
	return m.Predictor.Predict(ctx, input)
}

// acceptLog records the client address of every connection the server
// accepted, so the test can tell a request the server took (which must
// succeed) from one that never got in (refused, or still in the kernel's
// backlog when the listener closed).
type acceptLog struct {
	net.Listener
	accepted sync.Map // remote address -> struct{}
}

func (l *acceptLog) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Store(c.RemoteAddr().String(), struct{}{})
	}
	return c, err
}

// TestGracefulShutdown drives load through a shutdown: readiness must turn
// false first while predictions are still served, in-flight requests must
// finish, and no request the server accepted may fail.
func TestGracefulShutdown(t *testing.T) {
	model := testruntime.LoadModel(t, 2)
	srv := server.New(testLimits, quietLog)
	srv.SetModel(slowModel{Predictor: model, delay: 5 * time.Millisecond})
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &acceptLog{Listener: inner}
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
	var ok, failedAccepted, notAccepted, okAfterStop atomic.Int64
	var stopped atomic.Bool
	var firstFailure atomic.Value
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				var local string
				trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { local = info.Conn.LocalAddr().String() }}
				req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
					http.MethodPost, url+"/predict", bytes.NewReader(image))
				req.Header.Set("Content-Type", "image/jpeg")
				resp, err := client.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				_, accepted := ln.accepted.Load(local)
				switch {
				case err == nil && resp.StatusCode == http.StatusOK:
					ok.Add(1)
					if stopped.Load() {
						okAfterStop.Add(1)
					}
					continue
				case err != nil && (!accepted || errors.Is(err, syscall.ECONNREFUSED)):
					notAccepted.Add(1) // the server never took this connection
				default:
					failedAccepted.Add(1)
					firstFailure.CompareAndSwap(nil, errors.Join(err, statusError(resp)))
				}
				if stopped.Load() && (err != nil || resp.StatusCode != http.StatusOK) {
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
	t.Logf("ok %d (after SIGTERM %d), failed after acceptance %d, not accepted %d",
		ok.Load(), okAfterStop.Load(), failedAccepted.Load(), notAccepted.Load())
	if failedAccepted.Load() != 0 {
		t.Errorf("%d accepted requests failed; first: %v", failedAccepted.Load(), firstFailure.Load())
	}
	if okAfterStop.Load() == 0 {
		t.Error("no request was served after the shutdown began; the drain did not happen")
	}
	if ok.Load() < 50 {
		t.Errorf("only %d requests succeeded: the load was too light to mean anything", ok.Load())
	}
}

type httpStatusError int

func (e httpStatusError) Error() string { return http.StatusText(int(e)) }

func statusError(resp *http.Response) error {
	if resp == nil {
		return nil
	}
	return httpStatusError(resp.StatusCode)
}
