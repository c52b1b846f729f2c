package main

import (
	"os"
	"regexp"
	"strings"
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

// Each base is a build argument (so stand-ins can take their place) whose
// default is a public image pinned by digest.
func TestDockerfileBasesAreArgumentsPinnedByDigest(t *testing.T) {
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	pinned := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^ARG (\w+_IMAGE)=(\S+)$`).FindAllSubmatch(dockerfile, -1) {
		if !regexp.MustCompile(`^[\w./:-]+@sha256:[0-9a-f]{64}$`).Match(m[2]) {
			t.Errorf("ARG %s defaults to %s, not an image pinned by digest", m[1], m[2])
		}
		pinned[string(m[1])] = true
	}
	froms := regexp.MustCompile(`(?m)^FROM (?:--platform=\S+ )?(\S+)`).FindAllSubmatch(dockerfile, -1)
	if len(froms) < 3 {
		t.Fatalf("found %d FROM lines, want the build, onnxruntime and runtime stages", len(froms))
	}
	for _, m := range froms {
		arg := regexp.MustCompile(`^\$\{(\w+)\}$`).FindSubmatch(m[1])
		if arg == nil || !pinned[string(arg[1])] {
			t.Errorf("FROM %s: not a base argument with a pinned default", m[1])
		}
	}
}

// The Dockerfile fetches with package managers' own clients (go, npm, apt),
// never from an address written in it.
func TestDockerfileNamesNoAddress(t *testing.T) {
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`\S*://\S*|\b(curl|wget)\b`).Find(dockerfile); m != nil {
		t.Errorf("the Dockerfile names %q; fetch by package name with the ordinary client instead", m)
	}
}

// The final stage checks the model it ships, after copying the model, its
// report and the evaluation set, and the build context lets them in.
func TestDockerfileChecksItsOwnModel(t *testing.T) {
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(dockerfile)
	final := text[strings.LastIndex(text, "\nFROM "):]
	check := strings.Index(final, `RUN ["/model/server", "-check"]`)
	if check < 0 {
		t.Fatal(`the final stage does not RUN ["/model/server", "-check"]`)
	}
	for _, copied := range []string{"COPY artifacts/planets.onnx /model/planets.onnx", "COPY artifacts/model.json /model/model.json", "COPY artifacts/report.json /model/report.json", "COPY eval /model/eval", "MODEL_REPORT=/model/report.json", "EVAL_DIR=/model/eval", "USER 65532:65532"} {
		if i := strings.Index(final, copied); i < 0 || i > check {
			t.Errorf("the final stage has no %q before the check", copied)
		}
	}
	ignore, err := os.ReadFile(".dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for _, kept := range []string{"!artifacts/report.json", "!artifacts/model.json", "!eval"} {
		if !strings.Contains(string(ignore), "\n"+kept+"\n") {
			t.Errorf(".dockerignore does not let %s into the build context", kept)
		}
	}
}
