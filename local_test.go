package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/planets-mlops/deploy/internal/localcluster"
)

// The README's main job, `hack/local-deploy.sh` (go run . local), must keep
// working: it deploys, finds nothing to do the second time, and serves.
func TestLocalMainJobDeploysRedeploysAsANoOpAndServes(t *testing.T) {
	localcluster.ToolchainBin(t)
	if os.Getenv("ONNXRUNTIME_LIB") == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("ONNXRUNTIME_LIB is unset: export ONNXRUNTIME_LIB=$(model/hack/onnxruntime.sh)")
		}
		t.Skip("\n\n*** SKIPPED: ONNXRUNTIME_LIB is unset; export ONNXRUNTIME_LIB=$(model/hack/onnxruntime.sh)\n")
	}
	var out strings.Builder
	if err := runLocal(nil, &out); err != nil {
		t.Fatalf("local: %v\n%s", err, out.String())
	}
	report := out.String()
	t.Log("\n" + report)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`first up: creates the model service\)\n\s+9 create in`),
		regexp.MustCompile(`nothing to do\)\n\s+9 same in`),
		regexp.MustCompile(`2/2 replicas ready, generation 1`),
		regexp.MustCompile(`200 OK \{"prediction":"Earth","probabilities":\{"Earth":0\.9`),
	} {
		if !want.MatchString(report) {
			t.Errorf("the report does not show %q", want)
		}
	}
}
