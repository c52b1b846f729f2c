package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/planets-mlops/deploy/internal/testenv"
	"github.com/planets-mlops/deploy/internal/testenv/fixture"
)

// The README's main job, `hack/local-deploy.sh` (go run ./cmd/local), must keep
// working: it builds and pushes the image, deploys it by digest to a real
// node, finds nothing to do the second time, and the deployed pods answer
// through the Service's NodePort on 127.0.0.1.
func TestLocalMainJobDeploysRedeploysAsANoOpAndServes(t *testing.T) {
	testenv.NeedToolchain(t)
	fixture.Docker(t)
	t.Chdir(filepath.Join("..", "..")) // the job runs from the repository's root
	var out strings.Builder
	if err := runLocal(nil, &out); err != nil {
		t.Fatalf("local: %v\n%s", err, out.String())
	}
	report := out.String()
	t.Log("\n" + report)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`image\s+127\.0\.0\.1:\d+/planets/planet-classifier@sha256:[0-9a-f]{64}\n`),
		regexp.MustCompile(`first up: creates the model service\)\n\s+9 create in`),
		regexp.MustCompile(`nothing to do\)\n\s+no changes \(9 same\) in`),
		regexp.MustCompile(`2/2 replicas ready, generation 1`),
		regexp.MustCompile(`pod planet-classifier-\S+ on node localnode: Running, 0 restarts\n\s+pod planet-classifier-\S+ on node localnode: Running, 0 restarts\n`),
		regexp.MustCompile(`curl -F file=@\S+ http://127\.0\.0\.1:\d+/predict\n`),
		regexp.MustCompile(`200 OK \{"prediction":"Earth","probabilities":\{"Earth":0\.9`),
	} {
		if !want.MatchString(report) {
			t.Errorf("the report does not show %q", want)
		}
	}
}
