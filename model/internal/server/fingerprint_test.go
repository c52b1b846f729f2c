package server_test

import (
	"bytes"
	"encoding/json"
	"image"
	"image/png"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/planets-mlops/deploy/model/internal/server"
)

// TestFingerprintReported: with a fingerprint set, /readyz says it in its
// body and every /predict answer (a prediction or an error) carries it in
// the X-Model-Fingerprint header; without one, neither does.
func TestFingerprintReported(t *testing.T) {
	var img bytes.Buffer
	if err := png.Encode(&img, image.NewRGBA(image.Rect(0, 0, 8, 8))); err != nil {
		t.Fatal(err)
	}
	for _, fp := range []string{"5d41402abc4b", ""} {
		srv := server.New(testLimits, quietLog)
		t.Cleanup(srv.Close)
		srv.SetFingerprint(fp)
		srv.SetModel(fakeModel{})
		ts := httptest.NewServer(srv.Handler())
		t.Cleanup(ts.Close)

		resp, body := get(t, ts.URL+"/readyz")
		var ready map[string]string
		if err := json.Unmarshal([]byte(body), &ready); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("fingerprint %q: /readyz %d %q: %v", fp, resp.StatusCode, body, err)
		}
		if got, ok := ready["modelFingerprint"]; got != fp || ok != (fp != "") {
			t.Errorf("fingerprint %q: /readyz body %q", fp, body)
		}
		status, pred, h := post(t, ts.URL, "image/png", bytes.NewReader(img.Bytes()))
		if status != http.StatusOK || pred.Prediction != "Mars" {
			t.Fatalf("fingerprint %q: /predict %d %+v", fp, status, pred)
		}
		if got := h.Get(server.FingerprintHeader); got != fp {
			t.Errorf("fingerprint %q: /predict's %s header %q", fp, server.FingerprintHeader, got)
		}
		status, _, h = post(t, ts.URL, "image/png", bytes.NewReader([]byte("not an image")))
		if status == http.StatusOK || h.Get(server.FingerprintHeader) != fp {
			t.Errorf("fingerprint %q: /predict of a bad image: %d, header %q", fp, status, h.Get(server.FingerprintHeader))
		}
	}
}
