package server_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/planets-mlops/deploy/model/internal/testruntime"
)

// rawRequest writes a whole HTTP/1.1 request on a new connection before
// reading anything, as Python's urllib and requests do, and returns the
// answer's status and decoded JSON body.
func rawRequest(t *testing.T, addr, header string, body []byte) (int, map[string]any) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, header); err != nil {
		t.Fatalf("writing the header: %v", err)
	}
	if _, err := conn.Write(body); err != nil {
		t.Fatalf("writing the body: %v (the server reset the connection instead of answering)", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	defer resp.Body.Close()
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("status %d: answer is not JSON: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, v
}

// TestTooLargeBodySentWholeGets413: a client that sends a too-large body in
// full before reading gets the 413 JSON, not a connection reset, whether
// the length is announced or not, raw or multipart.
func TestTooLargeBodySentWholeGets413(t *testing.T) {
	_, ts := newServer(t, fakeModel{}, testLimits)
	addr := strings.TrimPrefix(ts.URL, "http://")
	big := bytes.Repeat([]byte{0xff}, 3*int(testLimits.MaxBodyBytes))
	multipartBig, ct := multipartBody(t, "file", big)

	chunked := func(data []byte) []byte {
		var b bytes.Buffer
		for len(data) > 0 {
			n := min(len(data), 64<<10)
			fmt.Fprintf(&b, "%x\r\n%s\r\n", n, data[:n])
			data = data[n:]
		}
		b.WriteString("0\r\n\r\n")
		return b.Bytes()
	}
	for name, tc := range map[string]struct {
		header string
		body   []byte
	}{
		"raw, length announced":       {fmt.Sprintf("POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n", len(big)), big},
		"multipart, length announced": {fmt.Sprintf("POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", ct, multipartBig.Len()), multipartBig.Bytes()},
		"raw, chunked":                {"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n", chunked(big)},
	} {
		t.Run(name, func(t *testing.T) {
			status, body := rawRequest(t, addr, tc.header, tc.body)
			if status != http.StatusRequestEntityTooLarge || !strings.Contains(fmt.Sprint(body["detail"]), "exceeds the limit") {
				t.Errorf("got %d %v, want 413 with the limit", status, body)
			}
		})
	}
}

// TestSlowUploadsDoNotLockOut: clients trickling their bodies a byte at a
// time, more of them than MaxInFlight, must not keep normal clients out.
func TestSlowUploadsDoNotLockOut(t *testing.T) {
	_, ts := newServer(t, fakeModel{}, testLimits)
	addr := strings.TrimPrefix(ts.URL, "http://")
	done := make(chan struct{})
	var wg sync.WaitGroup
	slow := 3 * testLimits.MaxInFlight
	for range slow {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n")
		wg.Go(func() {
			defer conn.Close()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for range 200 { // at most 10 s
				select {
				case <-done:
					return
				case <-tick.C:
					if _, err := conn.Write([]byte{0}); err != nil {
						return
					}
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond) // every slow client is in
	valid := tinyPNG(t)
	var refused []int
	for range 20 {
		status, p, _ := post(t, ts.URL, "image/png", bytes.NewReader(valid))
		if status != http.StatusOK {
			refused = append(refused, status)
			t.Logf("%d: %s", status, p.Detail)
		}
	}
	close(done)
	wg.Wait()
	if len(refused) > 0 {
		t.Errorf("with %d slow uploads in progress, %d of 20 normal requests failed: %v", slow, len(refused), refused)
	}
}

// TestBodyBudget: bodies held at once never exceed MaxBufferedBytes; past
// it, requests get 503 with Retry-After, and the budget is whole again
// afterwards.
func TestBodyBudget(t *testing.T) {
	gate := make(chan struct{})
	limits := testLimits
	limits.MaxBufferedBytes = 2 * limits.MaxBodyBytes
	_, ts := newServer(t, fakeModel{gate: gate}, limits)
	closeGate := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(closeGate) // runs before the server closes, even if the test fails
	// PNG ignores trailing bytes.
	body := append(tinyPNG(t), make([]byte, limits.MaxBodyBytes*3/4)...)
	statuses := make(chan int, 4)
	var wg sync.WaitGroup
	for range 2 { // two bodies of 3/4 of the limit fit; they wait at the gate
		wg.Go(func() {
			status, _, _ := post(t, ts.URL, "image/png", bytes.NewReader(body))
			statuses <- status
		})
	}
	waitForMetric(t, ts.URL, "http_request_body_bytes_held", float64(2*(len(body)+1)))
	status, p, header := post(t, ts.URL, "image/png", bytes.NewReader(body))
	if status != http.StatusServiceUnavailable || header.Get("Retry-After") == "" || !strings.Contains(p.Detail, "bytes of uploads") {
		t.Errorf("third body: %d %q, want 503 with Retry-After", status, p.Detail)
	}
	closeGate()
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != http.StatusOK {
			t.Errorf("admitted request: %d", s)
		}
	}
	waitForMetric(t, ts.URL, "http_request_body_bytes_held", 0)
}

// waitForMetric polls /metrics until the unlabelled metric name has value
// want.
func waitForMetric(t *testing.T, url, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var last string
	for {
		_, metrics := get(t, url+"/metrics")
		for line := range strings.Lines(metrics) {
			if value, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
				last = value
				if v, err := strconv.ParseFloat(value, 64); err == nil && v == want {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics: %s is %s, never %g", name, last, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestServerErrorsAreJSON: the errors the server writes itself (no route,
// wrong method) have FastAPI's JSON shape, like the handlers' own.
func TestServerErrorsAreJSON(t *testing.T) {
	_, ts := newServer(t, fakeModel{}, testLimits)
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/nope", http.StatusNotFound},
		{http.MethodGet, "/predict", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/healthz", http.StatusMethodNotAllowed},
	} {
		req, _ := http.NewRequest(tc.method, ts.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Detail string }
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/json" || err != nil || body.Detail == "" {
			t.Errorf("%s %s: %d %q %v %+v, want %d JSON with a detail", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), err, body, tc.status)
		}
		if tc.status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", tc.method, tc.path)
		}
	}
}

// TestPredictBeforeTheModelLoads: before SetModel, /predict answers 503
// (JSON, Retry-After), like /readyz.
func TestPredictBeforeTheModelLoads(t *testing.T) {
	_, ts := newServer(t, nil, testLimits)
	status, p, header := post(t, ts.URL, "image/png", bytes.NewReader(tinyPNG(t)))
	if status != http.StatusServiceUnavailable || header.Get("Retry-After") == "" || !strings.Contains(p.Detail, "loading") {
		t.Errorf("/predict before the model: %d %q", status, p.Detail)
	}
}

// TestScanBombIsRefused: a progressive JPEG repeating its scans (minutes of
// decoding in full) is refused with 413 and the worker is free again.
func TestScanBombIsRefused(t *testing.T) {
	limits := testLimits
	limits.Workers = 1
	_, ts := newServer(t, fakeModel{}, limits)
	status, p, _ := post(t, ts.URL, "image/jpeg", bytes.NewReader(testruntime.ScanBombJPEG(2048, 2048, 20000)))
	if status != http.StatusRequestEntityTooLarge || !strings.Contains(p.Detail, "too many scans") {
		t.Errorf("scan bomb: %d %q, want 413 too many scans", status, p.Detail)
	}
	if status, _, _ := post(t, ts.URL, "image/png", bytes.NewReader(tinyPNG(t))); status != http.StatusOK {
		t.Errorf("after the bomb: %d", status)
	}
}
