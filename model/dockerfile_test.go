package main

import (
	"os"
	"regexp"
	"testing"
)

// The image must run the very onnxruntime the tests run: the Dockerfile and
// hack/onnxruntime.sh pin the same version and library checksum.
func TestDockerfileAndTestsPinTheSameOnnxruntime(t *testing.T) {
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	installer, err := os.ReadFile("hack/onnxruntime.sh")
	if err != nil {
		t.Fatal(err)
	}
	pins := []struct{ name, dockerfile, installer string }{
		{"version", `(?m)^ARG ONNXRUNTIME_VERSION=(\S+)$`, `(?m)^VERSION=(\S+)$`},
		{"library SHA-256", `(?m)^ARG ONNXRUNTIME_LIB_SHA256=([0-9a-f]{64})$`, `(?m)^LIB_SHA256=([0-9a-f]{64})$`},
	}
	for _, pin := range pins {
		inImage := regexp.MustCompile(pin.dockerfile).FindSubmatch(dockerfile)
		inTests := regexp.MustCompile(pin.installer).FindSubmatch(installer)
		if inImage == nil || inTests == nil {
			t.Fatalf("%s: not found (Dockerfile %q, hack/onnxruntime.sh %q)", pin.name, inImage, inTests)
		}
		if string(inImage[1]) != string(inTests[1]) {
			t.Errorf("%s: Dockerfile pins %s, the tests run %s", pin.name, inImage[1], inTests[1])
		}
	}
}
