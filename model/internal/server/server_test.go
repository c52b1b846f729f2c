package server_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"image"
	"image/png"
	"io"
	"log/slog"
	"math"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/planets-mlops/deploy/model/internal/classifier"
	"github.com/planets-mlops/deploy/model/internal/preprocess"
	"github.com/planets-mlops/deploy/model/internal/server"
	"github.com/planets-mlops/deploy/model/internal/testruntime"
)

var quietLog = slog.New(slog.NewJSONHandler(io.Discard, nil))

var testLimits = server.Limits{MaxBodyBytes: 1 << 20, MaxBufferedBytes: 8 << 20, MaxPixels: 1 << 22, MaxJPEGScans: 100, MaxInFlight: 16, Workers: 2, MaxConnections: 1024}

// fakeModel answers a fixed prediction, optionally waiting on gate first.
// It lets the HTTP tests run without onnxruntime.
type fakeModel struct {
	gate chan struct{}
}

var fakeLabels = []string{"Earth", "Jupiter", "Mars", "Mercury", "Moon", "Neptune", "Pluto", "Saturn", "Uranus", "Venus"}

func (fakeModel) Labels() []string { return fakeLabels }

func (fakeModel) Input() preprocess.Spec { return preprocess.Default }

func (f fakeModel) Predict(ctx context.Context, input []float32) (classifier.Prediction, error) {
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return classifier.Prediction{}, ctx.Err()
		}
	}
	p := make([]float32, len(fakeLabels))
	p[2] = 1
	return classifier.Prediction{Label: "Mars", Probabilities: p}, nil
}

func newServer(t testing.TB, model server.Predictor, limits server.Limits) (*server.Server, *httptest.Server) {
	srv := server.New(limits, quietLog)
	t.Cleanup(srv.Close) // after ts.Close (cleanups run last first): no request is left
	if model != nil {
		srv.SetModel(model)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return srv, ts
}

func multipartBody(t testing.TB, field string, data []byte) (*bytes.Buffer, string) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile(field, "image")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(data)
	mw.Close()
	return &body, mw.FormDataContentType()
}

type prediction struct {
	Prediction    string             `json:"prediction"`
	Probabilities map[string]float64 `json:"probabilities"`
	Detail        string             `json:"detail"`
}

func post(t testing.TB, url, contentType string, body io.Reader) (int, prediction, http.Header) {
	t.Helper()
	resp, err := http.Post(url+"/predict", contentType, body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p prediction
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatalf("status %d: response is not JSON: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, p, resp.Header
}

// TestPredictParityOverHTTP: the served probabilities equal the training
// code's (fixture) within 1e-4, by multipart upload and by raw body.
func TestPredictParityOverHTTP(t *testing.T) {
	model := testruntime.LoadModel(t, 2)
	_, ts := newServer(t, model, testLimits)
	parity := testruntime.LoadParity(t)
	for _, img := range parity.Images {
		for _, mode := range []string{"multipart", "raw"} {
			var status int
			var got prediction
			if mode == "multipart" {
				body, ct := multipartBody(t, "file", img.Data)
				status, got, _ = post(t, ts.URL, ct, body)
			} else {
				status, got, _ = post(t, ts.URL, "image/"+strings.ToLower(img.Format), bytes.NewReader(img.Data))
			}
			if status != http.StatusOK {
				t.Fatalf("%s %s: status %d: %s", img.File, mode, status, got.Detail)
			}
			if got.Prediction != img.Prediction {
				t.Errorf("%s %s: prediction %q, want %q", img.File, mode, got.Prediction, img.Prediction)
			}
			for i, label := range parity.Labels {
				if d := math.Abs(got.Probabilities[label] - img.Probabilities[i]); d > 1e-4 {
					t.Errorf("%s %s: p(%s) = %g, want %g (diff %g > 1e-4)", img.File, mode, label, got.Probabilities[label], img.Probabilities[i], d)
				}
			}
		}
	}
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestEndpoints(t *testing.T) {
	srv := server.New(testLimits, quietLog)
	defer srv.Close()
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()

	if resp, _ := get(t, ts.URL+"/readyz"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz before the model is loaded: %d, want 503", resp.StatusCode)
	}
	srv.SetModel(fakeModel{})
	if resp, _ := get(t, ts.URL+"/readyz"); resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz: %d, want 200", resp.StatusCode)
	}
	if resp, _ := get(t, ts.URL+"/healthz"); resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %d", resp.StatusCode)
	}
	if resp, _ := get(t, ts.URL+"/"); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/docs" {
		t.Errorf("/: %d to %q, want 302 to /docs", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body := get(t, ts.URL+"/docs")
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(body, "/predict") || !strings.Contains(body, "/openapi.json") {
		t.Errorf("/docs: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	resp, body = get(t, ts.URL+"/openapi.json")
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil || resp.StatusCode != http.StatusOK || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("/openapi.json: %d, %v", resp.StatusCode, err)
	}
	for _, path := range []string{"/predict", "/docs", "/openapi.json", "/", "/healthz", "/readyz", "/metrics"} {
		if doc.Paths[path] == nil {
			t.Errorf("/openapi.json does not document %s", path)
		}
	}
	var predict struct {
		RequestBody struct {
			Content map[string]any `json:"content"`
		} `json:"requestBody"`
	}
	raw, _ := json.Marshal(doc.Paths["/predict"]["post"])
	json.Unmarshal(raw, &predict)
	// Every Content-Type /predict accepts is documented.
	for _, ct := range []string{"multipart/form-data", "image/*", "application/octet-stream"} {
		if predict.RequestBody.Content[ct] == nil {
			t.Errorf("/openapi.json: POST /predict does not list %s", ct)
		}
	}

	body2, ct := multipartBody(t, "file", tinyPNG(t))
	if status, p, _ := post(t, ts.URL, ct, body2); status != http.StatusOK || p.Prediction != "Mars" || len(p.Probabilities) != 10 {
		t.Errorf("/predict: %d %+v", status, p)
	}
	if resp, _ := get(t, ts.URL+"/predict"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /predict: %d, want 405", resp.StatusCode)
	}
	if resp, _ := get(t, ts.URL+"/nope"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nope: %d, want 404", resp.StatusCode)
	}
	_, metrics := get(t, ts.URL+"/metrics")
	for _, want := range []string{
		`http_requests_total{code="200",route="POST /predict"} 1`,
		`http_requests_total{code="404",route="unmatched"} 1`,
		`http_request_duration_seconds_bucket{route="POST /predict",le=`,
		`model_inference_duration_seconds_count 1`,
		`model_preprocess_duration_seconds_count 1`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func tinyPNG(t testing.TB) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, 8, 8))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// bombPNG is a valid PNG header announcing width x height, and no pixels.
func bombPNG(width, height uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := binary.BigEndian.AppendUint32([]byte("IHDR"), width)
	chunk = binary.BigEndian.AppendUint32(chunk, height)
	chunk = append(chunk, 8, 0, 0, 0, 0)
	b.Write(binary.BigEndian.AppendUint32(nil, 13))
	b.Write(chunk)
	b.Write(binary.BigEndian.AppendUint32(nil, crc32.ChecksumIEEE(chunk)))
	return b.Bytes()
}

// hideLength makes the body's length unknown (chunked), so only the
// streaming limit can catch it.
type hideLength struct{ io.Reader }

func TestBadInput(t *testing.T) {
	_, ts := newServer(t, fakeModel{}, testLimits)
	valid := tinyPNG(t)
	big := bytes.Repeat([]byte{0xff}, int(testLimits.MaxBodyBytes)+1)
	multipartOf := func(field string, data []byte) func() (io.Reader, string) {
		return func() (io.Reader, string) {
			b, ct := multipartBody(t, field, data)
			return b, ct
		}
	}
	raw := func(ct string, data []byte) func() (io.Reader, string) {
		return func() (io.Reader, string) { return bytes.NewReader(data), ct }
	}
	for _, tc := range []struct {
		name       string
		body       func() (io.Reader, string)
		wantStatus int
		wantDetail string
	}{
		{"body over the limit", raw("image/png", big), 413, "exceeds the limit"},
		{"chunked body over the limit", func() (io.Reader, string) { return hideLength{bytes.NewReader(big)}, "image/png" }, 413, "exceeds the limit"},
		{"multipart file over the limit", multipartOf("file", big), 413, "exceeds the limit"},
		{"decompression bomb", raw("image/png", bombPNG(200000, 200000)), 413, "too many pixels"},
		{"bomb in multipart", multipartOf("file", bombPNG(50000, 50000)), 413, "too many pixels"},
		{"not an image", raw("image/png", []byte("hello, world")), 415, "unsupported image format"},
		{"unsupported format (BMP)", raw("image/bmp", append([]byte("BM"), make([]byte, 60)...)), 415, "unsupported image format"},
		{"wrong content type", raw("text/plain", valid), 415, "unsupported Content-Type"},
		{"no content type", raw("", valid), 415, "unsupported Content-Type"},
		{"truncated PNG", raw("image/png", valid[:len(valid)-20]), 400, "invalid image"},
		{"truncated JPEG", raw("image/jpeg", testruntime.LoadParity(t).Images[0].Data[:3000]), 400, "invalid image"},
		{"JPEG header only", raw("image/jpeg", []byte("\xff\xd8\xff")), 400, "invalid image"},
		{"empty body", raw("image/png", nil), 400, "empty"},
		{"multipart without file", multipartOf("image", valid), 422, `no "file" field`},
		{"broken multipart", raw("multipart/form-data; boundary=xyz", []byte("--nope\r\n")), 400, "reading the request body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, ct := tc.body()
			req, _ := http.NewRequest(http.MethodPost, ts.URL+"/predict", body)
			if ct != "" {
				req.Header.Set("Content-Type", ct)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var p prediction
			if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
				t.Fatalf("status %d, body not JSON: %v", resp.StatusCode, err)
			}
			if resp.StatusCode != tc.wantStatus || !strings.Contains(p.Detail, tc.wantDetail) {
				t.Errorf("got %d %q, want %d with %q", resp.StatusCode, p.Detail, tc.wantStatus, tc.wantDetail)
			}
		})
	}
	// The server is still fine.
	body, ct := multipartBody(t, "file", valid)
	if status, _, _ := post(t, ts.URL, ct, body); status != http.StatusOK {
		t.Fatalf("after bad input: %d", status)
	}
}

// TestOverloadAnswers503: past MaxInFlight concurrent predictions the server
// refuses at once instead of queueing without bound.
func TestOverloadAnswers503(t *testing.T) {
	gate := make(chan struct{})
	limits := testLimits
	limits.MaxInFlight = 2
	_, ts := newServer(t, fakeModel{gate: gate}, limits)
	var wg sync.WaitGroup
	statuses := make(chan int, 2)
	for range 2 {
		wg.Go(func() {
			resp, err := http.Post(ts.URL+"/predict", "image/png", bytes.NewReader(tinyPNG(t)))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		})
	}
	// Wait until both are inside (the in-flight gauge says so).
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, metrics := get(t, ts.URL+"/metrics")
		if strings.Contains(metrics, "http_requests_in_flight 3") { // two predictions and this scrape
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the two requests never got in flight")
		}
		time.Sleep(5 * time.Millisecond)
	}
	status, p, header := post(t, ts.URL, "image/png", bytes.NewReader(tinyPNG(t)))
	if status != http.StatusServiceUnavailable || header.Get("Retry-After") == "" || p.Detail == "" {
		t.Errorf("third request: %d %q Retry-After %q; want 503 with Retry-After", status, p.Detail, header.Get("Retry-After"))
	}
	close(gate)
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != http.StatusOK {
			t.Errorf("admitted request: %d", s)
		}
	}
}

// FuzzPredict drives arbitrary bytes through the whole request path, as a
// raw image and as a multipart upload: the answer must always be a JSON
// 200 or a client error, never a panic or a 5xx.
func FuzzPredict(f *testing.F) {
	for _, img := range testruntime.LoadParity(f).Images {
		f.Add(img.Data, false)
		f.Add(img.Data[:len(img.Data)*2/3], true)
	}
	f.Add(bombPNG(1<<30, 1<<30), false)
	f.Add([]byte("GIF89a\x01\x00\x01\x00"), true)
	f.Add([]byte{}, false)
	srv := server.New(server.Limits{MaxBodyBytes: 1 << 20, MaxBufferedBytes: 4 << 20, MaxPixels: 1 << 20, MaxJPEGScans: 50, MaxInFlight: 4, Workers: 1}, quietLog)
	f.Cleanup(srv.Close)
	srv.SetModel(fakeModel{})
	handler := srv.Handler()
	f.Fuzz(func(t *testing.T, data []byte, asMultipart bool) {
		var body io.Reader = bytes.NewReader(data)
		ct := "image/jpeg"
		if asMultipart {
			body, ct = multipartBody(t, "file", data)
		}
		req := httptest.NewRequest(http.MethodPost, "/predict", body)
		req.Header.Set("Content-Type", ct)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		switch rec.Code {
		case 200, 400, 413, 415, 422:
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		var p prediction
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
			t.Fatalf("status %d: not JSON: %v", rec.Code, err)
		}
		if (rec.Code == 200) != (p.Prediction != "") {
			t.Fatalf("status %d with %+v", rec.Code, p)
		}
	})
}

func BenchmarkPredictHTTP(b *testing.B) {
	model := testruntime.LoadModel(b, 2)
	limits := testLimits
	limits.MaxInFlight = 1024
	srv := server.New(limits, quietLog)
	defer srv.Close()
	srv.SetModel(model)
	handler := srv.Handler()
	data := testruntime.LoadParity(b).Images[0].Data
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/predict", bytes.NewReader(data))
			req.Header.Set("Content-Type", "image/jpeg")
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Fatal(rec.Code)
			}
		}
	})
}

// threadModel records the thread each prediction runs on.
type threadModel struct {
	fakeModel
	threads chan<- int
}

func (m threadModel) Predict(ctx context.Context, input []float32) (classifier.Prediction, error) {
	m.threads <- syscall.Gettid()
	return m.fakeModel.Predict(ctx, input)
}

// TestWorkersOwnTheirThreads: decoding and inference run only on the
// workers' own threads (one each, for good), and refused requests never
// reach a worker.
func TestWorkersOwnTheirThreads(t *testing.T) {
	limits := testLimits
	limits.Workers = 3
	limits.MaxInFlight = 100 // every request gets in
	srv := server.New(limits, quietLog)
	defer srv.Close()
	threads := make(chan int, 100)
	srv.SetModel(threadModel{threads: threads})
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	var wg sync.WaitGroup
	for range 60 {
		wg.Go(func() {
			if status, p, _ := post(t, ts.URL, "image/png", bytes.NewReader(tinyPNG(t))); status != http.StatusOK || p.Prediction != "Mars" {
				t.Errorf("predict: %d %+v", status, p)
			}
		})
	}
	wg.Wait()
	if status, _, _ := post(t, ts.URL, "text/plain", strings.NewReader("not an image")); status != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: %d, want 415", status)
	}
	close(threads)
	seen := map[int]int{}
	n := 0
	for tid := range threads {
		seen[tid]++
		n++
	}
	if n != 60 {
		t.Errorf("%d predictions, want 60 (the refused request must not reach a worker)", n)
	}
	if len(seen) > limits.Workers {
		t.Errorf("predictions ran on %d threads, want at most one a worker (%d): %v", len(seen), limits.Workers, seen)
	}
}
