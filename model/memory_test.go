package main

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/planets-mlops/deploy/model/internal/testenv"
	"github.com/planets-mlops/deploy/model/internal/testruntime"
)

const memoryLimitMiB = 256 // the Deployment's default memory limit

// memoryCgroup is a cgroup (v1 memory controller, or v2) with a memory
// limit and no swap, removed when the test ends.
type memoryCgroup struct{ dir, peakFile string }

// newMemoryCgroup needs root and a writable cgroup filesystem, a proof of
// the full tier (testenv): without them the test fails there and is skipped
// with a message in the hermetic tier.
func newMemoryCgroup(t *testing.T, limit int64) *memoryCgroup {
	t.Helper()
	var cg *memoryCgroup
	testenv.NeedProof(t, "root and a cgroup memory controller", func() error {
		var err error
		cg, err = makeMemoryCgroup(t, fmt.Sprintf("planets-model-test-%d", os.Getpid()), limit)
		return err
	})
	return cg
}

// makeMemoryCgroup creates the cgroup (removed when the test ends), or says
// why it cannot.
func makeMemoryCgroup(t *testing.T, name string, limit int64) (*memoryCgroup, error) {
	write := func(dir, file, value string) error {
		return os.WriteFile(filepath.Join(dir, file), []byte(value), 0o644)
	}
	var cg memoryCgroup
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err == nil { // v1
		cg = memoryCgroup{dir: filepath.Join("/sys/fs/cgroup/memory", name), peakFile: "memory.max_usage_in_bytes"}
		if err := os.Mkdir(cg.dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating a v1 memory cgroup: %w", err)
		}
		t.Cleanup(func() { os.Remove(cg.dir) })
		if err := write(cg.dir, "memory.limit_in_bytes", strconv.FormatInt(limit, 10)); err != nil {
			t.Fatal(err)
		}
		// Without swap accounting there may be no memsw file; then there is
		// no swap to escape to either when the machine has none.
		_ = write(cg.dir, "memory.memsw.limit_in_bytes", strconv.FormatInt(limit, 10))
	} else { // v2
		cg = memoryCgroup{dir: filepath.Join("/sys/fs/cgroup", name), peakFile: "memory.peak"}
		if err := os.Mkdir(cg.dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating a v2 cgroup: %w", err)
		}
		t.Cleanup(func() { os.Remove(cg.dir) })
		if err := write(cg.dir, "memory.max", strconv.FormatInt(limit, 10)); err != nil {
			return nil, fmt.Errorf("setting memory.max (is the memory controller enabled for children?): %w", err)
		}
		_ = write(cg.dir, "memory.swap.max", "0")
	}
	return &cg, nil
}

func (cg *memoryCgroup) peakMiB() float64 {
	raw, _ := os.ReadFile(filepath.Join(cg.dir, cg.peakFile))
	n, _ := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
	return float64(n) / (1 << 20)
}

// resetPeak starts a new peak measurement (v1 only; v2's memory.peak is
// for the cgroup's life, so the figures there are cumulative).
func (cg *memoryCgroup) resetPeak() {
	_ = os.WriteFile(filepath.Join(cg.dir, cg.peakFile), []byte("0"), 0o644)
}

// processPeakRSS is the server's peak resident memory (VmHWM), in MiB,
// and resets it (clear_refs 5) for the next pattern.
func processPeakRSS(pid int) float64 {
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	var kb float64
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ = strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		}
	}
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0o644)
	return kb / 1024
}

// TestMemoryBoundedUnderLimit runs the real server in a cgroup limited to
// 256 MiB (no swap) and throws the hostile patterns at it: concurrent
// 10 MB uploads (raw and multipart), 20 MiB multipart bodies sent whole,
// slow uploads, and images that are small to send but large to decode.
// After each, the process must still be alive and serve normally; the peak
// resident memory of each pattern is logged.
func TestMemoryBoundedUnderLimit(t *testing.T) {
	testruntime.Init(t)
	cg := newMemoryCgroup(t, memoryLimitMiB<<20)
	port := freePort(t)
	// The shell joins the cgroup, then becomes the server: everything the
	// server allocates is charged to it.
	cmd := exec.Command("/bin/sh", "-c", `echo $$ > "$0/cgroup.procs" && exec "$1"`, cg.dir, os.Args[0])
	cmd.Env = append(os.Environ(), "MODEL_SERVER_E2E=1", "HOST=127.0.0.1", fmt.Sprintf("PORT=%d", port),
		"MODEL_PATH="+testruntime.ModelPath(t), "DRAIN_DELAY=0s", "LOG_LEVEL=warn")
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 100}}
	alive := func(when string) {
		t.Helper()
		select {
		case err := <-exited:
			t.Fatalf("%s: the server exited (%v; OOM-killed?); logs:\n%s", when, err, logs.String())
		default:
		}
		resp, err := client.Post(base+"/predict", "image/jpeg", bytes.NewReader(testruntime.LoadParity(t).Images[0].Data))
		if err != nil {
			t.Fatalf("%s: a normal request failed: %v; logs:\n%s", when, err, logs.String())
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: a normal request got %d", when, resp.StatusCode)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready after 20s; logs:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	alive("at start")
	t.Logf("idle: peak RSS %.1f MiB, cgroup peak %.1f MiB (limit %d MiB)", processPeakRSS(cmd.Process.Pid), cg.peakMiB(), memoryLimitMiB)
	cg.resetPeak()

	upload := make([]byte, 10_000_000)
	copy(upload, testruntime.LoadParity(t).Images[0].Data) // a JPEG with 10 MB of trailing bytes
	bigMultipart, bigMultipartType := multipartOf(t, make([]byte, 20<<20))
	bigPNG := largePNG(t, 2048, 2048) // 4 MP, 16-bit RGBA: small to send, 32 MiB to decode
	bombJPEG := testruntime.ScanBombJPEG(2048, 2048, 99)
	normal := testruntime.LoadParity(t).Images[0].Data

	for _, pattern := range []struct {
		name    string
		clients int
		each    func() (*http.Request, error)
		slow    bool
	}{
		{name: "64 raw 10 MB uploads at once", clients: 64, each: func() (*http.Request, error) {
			return http.NewRequest(http.MethodPost, base+"/predict", bytes.NewReader(upload))
		}},
		{name: "64 multipart 10 MB uploads at once", clients: 64, each: func() (*http.Request, error) {
			body, ct := multipartOf(t, upload)
			req, err := http.NewRequest(http.MethodPost, base+"/predict", bytes.NewReader(body))
			if err == nil {
				req.Header.Set("Content-Type", ct)
			}
			return req, err
		}},
		{name: "32 multipart 20 MiB bodies sent whole (over the limit)", clients: 32, each: func() (*http.Request, error) {
			req, err := http.NewRequest(http.MethodPost, base+"/predict", bytes.NewReader(bigMultipart))
			if err == nil {
				req.Header.Set("Content-Type", bigMultipartType)
			}
			return req, err
		}},
		{name: "32 4-megapixel 16-bit PNGs at once", clients: 32, each: func() (*http.Request, error) {
			return http.NewRequest(http.MethodPost, base+"/predict", bytes.NewReader(bigPNG))
		}},
		{name: "32 4-megapixel progressive JPEGs of 99 scans at once", clients: 32, each: func() (*http.Request, error) {
			return http.NewRequest(http.MethodPost, base+"/predict", bytes.NewReader(bombJPEG))
		}},
		{name: "200 slow uploads (1 byte every 50 ms, 3 s) and normal requests", clients: 200, slow: true},
	} {
		var wg sync.WaitGroup
		statuses := make(map[int]int)
		var mu sync.Mutex
		record := func(status int) {
			mu.Lock()
			statuses[status]++
			mu.Unlock()
		}
		if pattern.slow {
			for range pattern.clients {
				wg.Go(func() { record(slowUpload(port, 60)) })
			}
			for range 30 {
				time.Sleep(100 * time.Millisecond)
				resp, err := client.Post(base+"/predict", "image/jpeg", bytes.NewReader(normal))
				if err != nil {
					t.Errorf("normal request during slow uploads: %v", err)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("normal request during slow uploads: %d", resp.StatusCode)
				}
			}
		} else {
			for range pattern.clients {
				wg.Go(func() {
					req, err := pattern.each()
					if err != nil {
						t.Error(err)
						return
					}
					if req.Header.Get("Content-Type") == "" {
						req.Header.Set("Content-Type", "image/png")
					}
					resp, err := client.Do(req)
					if err != nil {
						record(-1)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					record(resp.StatusCode)
				})
			}
		}
		wg.Wait()
		alive("after " + pattern.name)
		t.Logf("%-58s peak RSS %6.1f MiB, cgroup peak %6.1f MiB; answers %v", pattern.name,
			processPeakRSS(cmd.Process.Pid), cg.peakMiB(), statuses)
		cg.resetPeak()
	}
}

func multipartOf(t *testing.T, data []byte) ([]byte, string) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("file", "image")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(data)
	mw.Close()
	return body.Bytes(), mw.FormDataContentType()
}

// largePNG is a 16-bit RGBA PNG of a smooth gradient: it compresses to
// little but decodes to 8 bytes a pixel.
func largePNG(t *testing.T, width, height int) []byte {
	img := image.NewNRGBA64(image.Rect(0, 0, width, height))
	for y := range height {
		for x := range width {
			img.SetNRGBA64(x, y, color.NRGBA64{R: uint16(x * 32), G: uint16(y * 32), B: 0x8000, A: 0xffff})
		}
	}
	var b bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// slowUpload announces a 1 MB body and sends a byte every 50 ms, bytes
// times, then gives up; it returns -1 (no answer awaited).
func slowUpload(port, bytes int) int {
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return -2
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000000\r\n\r\n")
	for range bytes {
		if _, err := conn.Write([]byte{0}); err != nil {
			return -3
		}
		time.Sleep(50 * time.Millisecond)
	}
	return -1
}
