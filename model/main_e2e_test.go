package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/planets-mlops/deploy/model/internal/testruntime"
)

// TestMain lets the test binary act as the server: the end-to-end test runs
// it again with MODEL_SERVER_E2E=1, so the real main (flags, signals, model
// loading) is what gets tested, without building anything else.
func TestMain(m *testing.M) {
	if os.Getenv("MODEL_SERVER_E2E") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestSIGTERM starts the real server process, waits until it is ready,
// sends SIGTERM and checks that readiness turns false while predictions are
// still answered, and that the process then exits 0.
func TestSIGTERM(t *testing.T) {
	testruntime.Init(t)
	port := freePort(t)
	cmd := exec.Command(os.Args[0]) // no arguments: main parses them
	cmd.Env = append(os.Environ(),
		"MODEL_SERVER_E2E=1", "HOST=127.0.0.1", fmt.Sprintf("PORT=%d", port),
		"MODEL_PATH="+filepath.Join(testruntime.ModuleRoot(t), "artifacts", "planets.onnx"),
		"DRAIN_DELAY=1s", "SHUTDOWN_GRACE=5s", "LOG_LEVEL=warn")
	var logs bytes.Buffer
	cmd.Stderr = &logs
	started := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	status := func(path string) int {
		resp, err := http.Get(base + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for status("/readyz") != http.StatusOK {
		if time.Since(started) > 20*time.Second {
			t.Fatalf("not ready after 20s; logs:\n%s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("process start to ready: %s", time.Since(started))

	image := testruntime.LoadParity(t).Images[0].Data
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if s := status("/readyz"); s != http.StatusServiceUnavailable {
		t.Errorf("/readyz after SIGTERM: %d, want 503", s)
	}
	resp, err := http.Post(base+"/predict", "image/jpeg", bytes.NewReader(image))
	if err != nil {
		t.Fatalf("/predict during the drain: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/predict during the drain: %d, want 200", resp.StatusCode)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit: %v; logs:\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the server did not exit after SIGTERM")
	}
}

// TestReadyzWhileTheModelLoads: the server answers while the model loads:
// /readyz and /predict 503, /healthz 200. The model path is a FIFO nobody
// writes to, so loading blocks for as long as the test looks.
func TestReadyzWhileTheModelLoads(t *testing.T) {
	testruntime.Init(t)
	fifo := filepath.Join(t.TempDir(), "model.onnx")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "MODEL_SERVER_E2E=1", "HOST=127.0.0.1", fmt.Sprintf("PORT=%d", port),
		"MODEL_PATH="+fifo, "LOG_LEVEL=warn")
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	client := &http.Client{Timeout: 2 * time.Second}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(20 * time.Second)
	var resp *http.Response
	for {
		var err error
		resp, err = client.Get(base + "/readyz")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz while the model loads: %v; logs:\n%s", err, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	var body struct{ Status string }
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || body.Status != "model not loaded" {
		t.Errorf("/readyz while the model loads: %d %+v, want 503 model not loaded", resp.StatusCode, body)
	}
	if resp, err := client.Get(base + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz while the model loads: %v %v", resp, err)
	}
	resp, err := client.Post(base+"/predict", "image/jpeg", bytes.NewReader(testruntime.LoadParity(t).Images[0].Data))
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/predict while the model loads: %v %v, want 503", resp, err)
	}
}

// TestSchedulerProcs: the server runs a P for each worker on top of
// GOMAXPROCS (the environment's, or the runtime's default): the workers
// hold theirs while in C, and the HTTP side keeps its own.
func TestSchedulerProcs(t *testing.T) {
	testruntime.Init(t)
	cpus := runtime.GOMAXPROCS(0)
	if os.Getenv("GOMAXPROCS") != "" {
		cpus = runtime.NumCPU() // what the child sees once the variable is dropped
	}
	for _, tc := range []struct {
		env  []string
		want int
	}{
		{[]string{"WORKERS=3"}, cpus + 3},
		{[]string{"WORKERS=3", "GOMAXPROCS=2"}, 2 + 3},
	} {
		var env []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "GOMAXPROCS=") {
				env = append(env, kv)
			}
		}
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(env, "MODEL_SERVER_E2E=1", "HOST=127.0.0.1", fmt.Sprintf("PORT=%d", freePort(t)),
			"MODEL_PATH="+filepath.Join(testruntime.ModuleRoot(t), "artifacts", "planets.onnx"), "LOG_LEVEL=info")
		cmd.Env = append(cmd.Env, tc.env...)
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		loaded := make(chan map[string]any, 1)
		go func() {
			lines := bufio.NewScanner(stderr)
			for lines.Scan() {
				var entry map[string]any
				if json.Unmarshal(lines.Bytes(), &entry) == nil && entry["msg"] == "model loaded" {
					loaded <- entry
				}
			}
		}()
		select {
		case entry := <-loaded:
			if got, _ := entry["gomaxprocs"].(float64); int(got) != tc.want || entry["workers"] != float64(3) {
				t.Errorf("%v: gomaxprocs %v, workers %v; want %d and 3", tc.env, entry["gomaxprocs"], entry["workers"], tc.want)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("%v: no \"model loaded\" log line after 20s", tc.env)
		}
		cmd.Process.Kill()
		cmd.Wait()
	}
}

// TestCheckFlag runs the real main as model/Dockerfile does (-check): the
// committed model passes with a summary on stdout and exit code 0; a
// truncated one exits 1 with one line on stderr naming the file.
func TestCheckFlag(t *testing.T) {
	testruntime.Init(t)
	root := testruntime.ModuleRoot(t)
	good := filepath.Join(root, "artifacts", "planets.onnx")
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(t.TempDir(), "planets.onnx")
	if err := os.WriteFile(truncated, raw[:len(raw)/3], 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		model    string
		wantCode int
	}{{good, 0}, {truncated, 1}} {
		cmd := exec.Command(os.Args[0], "-check")
		cmd.Env = append(os.Environ(), "MODEL_SERVER_E2E=1", "MODEL_PATH="+tc.model,
			"MODEL_REPORT="+filepath.Join(root, "artifacts", "report.json"), "EVAL_DIR="+filepath.Join(root, "eval"))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := cmd.ProcessState.ExitCode()
		t.Logf("%s: exit %d, stdout %q, stderr %q", tc.model, code, stdout.String(), stderr.String())
		if code != tc.wantCode {
			t.Errorf("%s: exit code %d (%v), want %d", tc.model, code, err, tc.wantCode)
		}
		out := stdout.String()
		if tc.wantCode != 0 {
			out = stderr.String()
		}
		if strings.Count(out, "\n") != 1 || !strings.Contains(out, tc.model) {
			t.Errorf("%s: want one line naming the model, got %q", tc.model, out)
		}
	}
}
