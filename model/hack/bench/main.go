// Command bench starts a model server, measures the time from process start
// to ready, then drives POST /predict load (multipart "file", real dataset
// images) at given concurrencies over loopback, and reports requests/s,
// p50/p99 latency and the server's peak resident memory. It runs our server
// and the Python peer the same way (see hack/bench.sh).
//
// Only 127.0.0.1 is ever contacted. Load is bounded in time and count.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type body struct {
	data        []byte
	contentType string
}

func main() {
	name := flag.String("name", "server", "label for the report")
	port := flag.Int("port", 8080, "port the server listens on (127.0.0.1)")
	readyPath := flag.String("ready", "/readyz", "path that answers 200 once the server is ready")
	images := flag.String("images", "", "file listing image paths, one a line (relative to -root)")
	root := flag.String("root", ".", "directory the image paths are relative to")
	maxImages := flag.Int("max-images", 100, "images to cycle through")
	levels := flag.String("concurrency", "1,32", "comma-separated client counts")
	duration := flag.Duration("duration", 10*time.Second, "load time per concurrency level")
	maxRequests := flag.Int("max-requests", 200000, "request cap per level")
	warmup := flag.Duration("warmup", 2*time.Second, "load before measuring")
	wrk := flag.String("wrk", "", "if set, the wrk binary to generate the load with (with -wrk-script) instead of the built-in Go client")
	wrkScript := flag.String("wrk-script", "", "wrk Lua script (hack/predict.lua)")
	flag.Parse()
	command := flag.Args()
	if len(command) == 0 || *images == "" {
		fmt.Fprintln(os.Stderr, "usage: bench -name N -port P -images LIST [-root DIR] -- server command...")
		os.Exit(2)
	}
	bodies, err := loadBodies(*images, *root, *maxImages)
	if err != nil {
		fatal(err)
	}

	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	base := fmt.Sprintf("http://127.0.0.1:%d", *port)
	started := time.Now()
	if err := cmd.Start(); err != nil {
		fatal(err)
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}()
	readyAfter, err := waitReady(base+*readyPath, 60*time.Second)
	if err != nil {
		fatal(err)
	}
	fmt.Printf("%s: start to ready %.0f ms, idle RSS %.1f MiB\n", *name, float64(readyAfter.Sub(started).Microseconds())/1000, rssMiB(cmd.Process.Pid))

	for _, level := range strings.Split(*levels, ",") {
		clients, err := strconv.Atoi(strings.TrimSpace(level))
		if err != nil || clients < 1 {
			fatal(fmt.Errorf("bad concurrency %q", level))
		}
		run(base, bodies, clients, *warmup, *maxRequests) // warm up, discard
		peak := make(chan float64)
		stop := make(chan struct{})
		go samplePeakRSS(cmd.Process.Pid, stop, peak)
		cpuBefore := cpuTime(cmd.Process.Pid)
		if *wrk != "" {
			out, requests, loadCPU, err := runWrk(*wrk, *wrkScript, base, clients, *duration, *images, *root, *maxImages)
			close(stop)
			if err != nil {
				fatal(err)
			}
			fmt.Printf("%s: %2d clients (wrk): %s  server CPU/request %.0f us  load generator CPU/request %.0f us  peak RSS %.1f MiB\n", *name, clients, out,
				perRequestMicros(cpuTime(cmd.Process.Pid)-cpuBefore, requests), perRequestMicros(loadCPU, requests), <-peak)
			continue
		}
		loadBefore := ownCPUTime()
		r := run(base, bodies, clients, *duration, *maxRequests)
		loadCPU := ownCPUTime() - loadBefore
		close(stop)
		fmt.Printf("%s: %2d clients: %7.0f req/s  p50 %6.2f ms  p99 %6.2f ms  max %6.2f ms  (%d ok, %d failed, %.1fs)  server CPU/request %.0f us  load generator CPU/request %.0f us  peak RSS %.1f MiB\n",
			*name, clients, r.rps, ms(r.p50), ms(r.p99), ms(r.max), r.ok, r.failed, r.elapsed.Seconds(),
			perRequestMicros(cpuTime(cmd.Process.Pid)-cpuBefore, r.ok+r.failed), perRequestMicros(loadCPU, r.ok+r.failed), <-peak)
	}
}

type result struct {
	ok, failed    int64
	rps           float64
	p50, p99, max time.Duration
	elapsed       time.Duration
}

func run(base string, bodies []body, clients int, d time.Duration, maxRequests int) result {
	transport := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients, DisableCompression: true}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var next, ok, failed atomic.Int64
	lat := make([][]time.Duration, clients)
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1)
				if i > int64(maxRequests) {
					return
				}
				b := bodies[int(i)%len(bodies)]
				req, _ := http.NewRequest(http.MethodPost, base+"/predict", bytes.NewReader(b.data))
				req.Header.Set("Content-Type", b.contentType)
				t0 := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					continue
				}
				lat[c] = append(lat[c], time.Since(t0))
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	r := result{ok: ok.Load(), failed: failed.Load(), elapsed: elapsed}
	if len(all) > 0 {
		r.rps = float64(len(all)) / elapsed.Seconds()
		r.p50 = all[len(all)*50/100]
		r.p99 = all[min(len(all)-1, len(all)*99/100)]
		r.max = all[len(all)-1]
	}
	return r
}

// runWrk runs wrk with the predict.lua script and returns its summary lines.
// It also returns the CPU time wrk used.
func runWrk(wrk, script, base string, clients int, d time.Duration, list, root string, maxImages int) (string, int64, time.Duration, error) {
	absList, _ := filepath.Abs(list)
	absRoot, _ := filepath.Abs(root)
	cmd := exec.Command(wrk, "-t", strconv.Itoa(min(clients, 2)), "-c", strconv.Itoa(clients),
		"-d", fmt.Sprintf("%ds", max(1, int(d.Seconds()))), "--timeout", "10s", "-s", script, base,
		"--", absList, absRoot, strconv.Itoa(maxImages))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", 0, 0, fmt.Errorf("wrk: %v: %s", err, out)
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	var summary []string
	var requests int64
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "wrk: "); ok {
			summary = append(summary, rest)
			fmt.Sscanf(rest, "%d requests", &requests)
		}
	}
	return strings.Join(summary, "; "), requests, cpu, nil
}

func loadBodies(list, root string, limit int) ([]body, error) {
	raw, err := os.ReadFile(list)
	if err != nil {
		return nil, err
	}
	var bodies []body
	for _, line := range strings.Fields(string(raw)) {
		if len(bodies) == limit {
			break
		}
		data, err := os.ReadFile(filepath.Join(root, line))
		if err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		fw, _ := mw.CreateFormFile("file", filepath.Base(line))
		fw.Write(data)
		mw.Close()
		bodies = append(bodies, body{buf.Bytes(), mw.FormDataContentType()})
	}
	if len(bodies) == 0 {
		return nil, fmt.Errorf("no images in %s", list)
	}
	return bodies, nil
}

func waitReady(url string, timeout time.Duration) (time.Time, error) {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Now(), nil
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("%s not ready after %s", url, timeout)
}

// rssMiB is the resident memory of pid and its children (uvicorn has none,
// ours has none; the sum keeps it fair if that changes).
func rssMiB(pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func samplePeakRSS(pid int, stop <-chan struct{}, out chan<- float64) {
	var peak float64
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		peak = max(peak, rssMiB(pid))
		select {
		case <-stop:
			out <- peak
			return
		case <-tick.C:
		}
	}
}

// cpuTime is the user+system CPU time pid has used (/proc/PID/stat, in
// clock ticks of 10 ms on Linux).
func cpuTime(pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	fields := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// ownCPUTime is the user+system CPU time this process (the Go load
// generator) has used.
func ownCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func perRequestMicros(cpu time.Duration, requests int64) float64 {
	if requests == 0 {
		return 0
	}
	return float64(cpu.Microseconds()) / float64(requests)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}
