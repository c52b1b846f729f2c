package modelreport

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/planets-mlops/deploy/internal/testenv/fixture"
)

// TestPreviewCommentFromARealEngine runs real previews with the pinned
// Pulumi CLI (the Automation API writes each engine event as the CLI's
// --event-log does) of a program that exports modelFingerprint as the real
// one does: after an `up`, a preview with a new fingerprint gives the old
// and the planned one, and hack/preview-comment.sh, given that event log
// and the two reports, writes a comment with the old and the new figures;
// a preview with the same fingerprint gives a comment that says the model
// is unchanged.
func TestPreviewCommentFromARealEngine(t *testing.T) {
	env := fixture.Pulumi(t)
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const deployed, planned = "1111111111111111aaaa", "2222222222222222bbbb"
	fingerprint := deployed
	program := func(ctx *pulumi.Context) error {
		var r pulumi.ResourceState
		if err := ctx.RegisterComponentResource("mlops:infra:ModelService", "model-service", &r); err != nil {
			return err
		}
		ctx.Export("modelFingerprint", pulumi.String(fingerprint))
		return nil
	}
	stack := fixture.ProjectStack(ctx, t, env, "dev", fixture.Project("modelreport"), program, nil)
	fixture.Up(ctx, t, stack)
	preview := func(name string) string {
		log := fixture.PreviewEventLog(ctx, t, stack)
		path := filepath.Join(tmp, name)
		if err := os.WriteFile(path, log, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	repo, _ := filepath.Abs(filepath.Join("..", ".."))
	comment := func(events, baseline, report string) string {
		cmd := exec.CommandContext(ctx, "bash", "hack/preview-comment.sh", filepath.Join(tmp, "preview.txt"), filepath.Join(tmp, "admin.md"))
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "OUTCOME=success", "HEAD_SHA=3f9c2e1aaaaaaa", "RUN_URL=https://ci.example/run/1",
			"MODEL_REPORT="+report, "MLOPS_BASELINE_REPORT="+baseline, "PREVIEW_EVENTS="+events)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		text, err := cmd.Output()
		if err != nil {
			t.Fatalf("hack/preview-comment.sh: %v\n%s", err, stderr.String())
		}
		return string(text)
	}
	os.WriteFile(filepath.Join(tmp, "preview.txt"), []byte("~ 1 to update\n"), 0o644)
	os.WriteFile(filepath.Join(tmp, "admin.md"), nil, 0o644)
	committed := filepath.Join(repo, "model", "artifacts", "report.json")
	swapped := filepath.Join(repo, "testdata", "swapped-labels", "model", "artifacts", "report.json")

	fingerprint = planned
	changed := preview("changed.jsonl")
	f, err := os.Open(changed)
	if err != nil {
		t.Fatal(err)
	}
	old, now, err := Fingerprints(f)
	f.Close()
	if err != nil || old != deployed || now != planned {
		t.Fatalf("fingerprints from the event log: %q -> %q (%v), want %q -> %q", old, now, err, deployed, planned)
	}
	text := comment(changed, committed, swapped)
	t.Logf("model change:\n%s", text)
	for _, want := range []string{
		"<!-- pulumi-preview: mlops/dev -->", "#### :crystal_ball: The model", "**The model changes**",
		"fingerprint `111111111111` -> `222222222222`",
		"| **accuracy** | 99.0% (99/100) | **79.0%** (79/100) | **-20.0 pts** |",
		"| :small_red_triangle_down: Saturn | 100.0% (10/10) | **0.0%** (0/10) | **-100.0 pts** |",
		"| Moon | 90.0% (9/10) | 90.0% (9/10) | = |", "| size |", "| per image, p50 / p99 |", "**The labels are in another order**",
		"~ 1 to update",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the comment lacks %q", want)
		}
	}

	fingerprint = deployed // as the state holds it: the preview above changed nothing
	same := preview("same.jsonl")
	text = comment(same, committed, committed)
	t.Logf("infrastructure only:\n%s", text)
	if !strings.Contains(text, "**The model is unchanged** (fingerprint `111111111111`): this pull request changes only the infrastructure.") || strings.Contains(text, "| **accuracy**") {
		t.Errorf("the comment of an infrastructure-only change does not say the model is unchanged:\n%s", text)
	}
}
