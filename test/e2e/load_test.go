package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// e2eLoad is a closed loop of /predict requests: each worker sends one
// request, waits for its answer, and sends the next, until Stop, the
// request budget or the time budget ends it (every loop is bounded).
type e2eLoad struct {
	cancel context.CancelFunc
	done   sync.WaitGroup
	start  time.Time

	mu       sync.Mutex
	total    int
	failed   int
	failures []string       // the first few, for the report
	answers  map[string]int // answer (probabilities) -> count
	end      time.Time
}

// e2eLoadResult is what a load saw.
type e2eLoadResult struct {
	Total, Failed int
	Failures      []string
	Answers       map[string]int
	Duration      time.Duration
}

func (r e2eLoadResult) String() string {
	return fmt.Sprintf("%d requests, %d failed, %d distinct answers, in %.1fs (%.0f req/s)",
		r.Total, r.Failed, len(r.Answers), r.Duration.Seconds(), float64(r.Total)/r.Duration.Seconds())
}

const (
	e2eLoadWorkers     = 2
	e2eLoadMaxRequests = 200_000
	e2eLoadMaxDuration = 12 * time.Minute
	// e2eLoadPause between a worker's requests keeps the rate near 150/s:
	// each request is a new connection, and a faster loop would run out of
	// loopback ports (TIME_WAIT) during a long rollout.
	e2eLoadPause = 10 * time.Millisecond
)

// e2eStartLoad starts the closed loop against baseURL/predict with image.
// Every request uses a new connection, so each one is routed afresh by
// kube-proxy, as a load balancer's clients would be.
func e2eStartLoad(ctx context.Context, t *testing.T, baseURL, image string) *e2eLoad {
	t.Helper()
	return e2eStartLoadAt(ctx, t, baseURL, image, e2eLoadWorkers, e2eLoadPause)
}

// e2eStartLoadAt is e2eStartLoad with workers closed loops, each pausing
// pause between its requests.
func e2eStartLoadAt(ctx context.Context, t *testing.T, baseURL, image string, workers int, pause time.Duration) *e2eLoad {
	t.Helper()
	body, contentType := e2ePredictBody(t, image)
	ctx, cancel := context.WithTimeout(ctx, e2eLoadMaxDuration)
	l := &e2eLoad{cancel: cancel, start: time.Now(), answers: map[string]int{}}
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
	}
	for range workers {
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			for ctx.Err() == nil {
				answer, err := e2ePredict(ctx, client, baseURL, body, contentType)
				if ctx.Err() != nil {
					return // stopped mid-request: not the server's failure
				}
				l.mu.Lock()
				l.total++
				if err != nil {
					l.failed++
					if len(l.failures) < 10 {
						l.failures = append(l.failures, fmt.Sprintf("%s: %v", time.Since(l.start).Round(time.Millisecond), err))
					}
				} else {
					l.answers[answer]++
				}
				stop := l.total >= e2eLoadMaxRequests
				l.mu.Unlock()
				if stop {
					return
				}
				time.Sleep(pause)
			}
		}()
	}
	return l
}

// Stop ends the load and returns what it saw.
func (l *e2eLoad) Stop() e2eLoadResult {
	l.cancel()
	l.done.Wait()
	return l.snapshot()
}

// snapshot is what the load has seen so far.
func (l *e2eLoad) snapshot() e2eLoadResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	return e2eLoadResult{
		Total: l.total, Failed: l.failed,
		Failures: slices.Clone(l.failures),
		Answers: func() map[string]int {
			m := map[string]int{}
			for k, v := range l.answers {
				m[k] = v
			}
			return m
		}(),
		Duration: time.Since(l.start),
	}
}

// e2ePredictBody is the multipart form MLEM's clients sent: field "file".
func e2ePredictBody(t *testing.T, image string) ([]byte, string) {
	t.Helper()
	content, err := os.ReadFile(image)
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	form := multipart.NewWriter(&body)
	part, err := form.CreateFormFile("file", filepath.Base(image))
	if err != nil {
		t.Fatal(err)
	}
	part.Write(content)
	if err := form.Close(); err != nil {
		t.Fatal(err)
	}
	return body.Bytes(), form.FormDataContentType()
}

// e2ePrediction is /predict's answer.
type e2ePrediction struct {
	Prediction    string             `json:"prediction"`
	Probabilities map[string]float32 `json:"probabilities"`
}

// e2ePredict sends one /predict and returns the answer's probabilities as
// canonical JSON (which tells the models apart); anything but a 200 with a
// prediction is an error.
func e2ePredict(ctx context.Context, client *http.Client, baseURL string, body []byte, contentType string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/predict", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(answer)))
	}
	var prediction e2ePrediction
	if err := json.Unmarshal(answer, &prediction); err != nil || prediction.Prediction == "" {
		return "", fmt.Errorf("not a prediction: %q", answer)
	}
	canonical, err := json.Marshal(prediction) // map keys sorted
	return string(canonical), err
}
