package registry

import (
	"net/http"
	"path/filepath"
	"testing"
)

func TestRegistryServesTheDistributionAPIOnLoopbackUntilClosed(t *testing.T) {
	r, err := Start(filepath.Join(t.TempDir(), "not-yet"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + r.Host + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/ = %s, want 200", resp.Status)
	}
	// An unknown image is a 404, not an empty success.
	resp, err = http.Get("http://" + r.Host + "/v2/planets/manifests/sha256:" + "0000000000000000000000000000000000000000000000000000000000000000")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET an unknown manifest = %s, want 404", resp.Status)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + r.Host + "/v2/"); err == nil {
		t.Fatal("the registry still answers after Close")
	}
}
