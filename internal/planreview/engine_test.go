package planreview

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/events"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/planets-mlops/deploy/internal/localcluster"
)

// TestAdminChangesFromARealEngine reads the events of a real preview, run
// by the pinned Pulumi CLI (the Automation API has it write its --event-log
// file and decodes each line into an apitype.EngineEvent): the program's
// resources are components carrying the program's type tokens, so no cloud
// provider is needed. After an `up`, a preview that adds an API and keeps
// the cluster lists only the API.
func TestAdminChangesFromARealEngine(t *testing.T) {
	bin := localcluster.ToolchainBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("PULUMI_HOME", filepath.Join(tmp, "home"))
	t.Setenv("PULUMI_BACKEND_URL", "file://"+filepath.Join(tmp, "state"))
	t.Setenv("PULUMI_CONFIG_PASSPHRASE", "planreview-throwaway")
	t.Setenv("PULUMI_SKIP_UPDATE_CHECK", "true")
	for _, d := range []string{"home", "state"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}

	withAPI := false
	program := func(ctx *pulumi.Context) error {
		types := [][2]string{
			{"gcp:container/cluster:Cluster", "cluster"},
			{"kubernetes:apps/v1:Deployment", "model"},
		}
		if withAPI {
			types = append(types, [2]string{"gcp:projects/service:Service", "apis-monitoring"})
		}
		for _, tn := range types {
			var r pulumi.ResourceState
			if err := ctx.RegisterComponentResource(tn[0], tn[1], &r); err != nil {
				return err
			}
		}
		return nil
	}
	stack, err := auto.UpsertStackInlineSource(ctx, "dev", "planreview", program, auto.WorkDir(tmp))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := stack.Up(ctx, optup.ProgressStreams(&out), optup.ErrorProgressStreams(&out)); err != nil {
		t.Fatalf("up: %v\n%s", err, out.String())
	}

	withAPI = true
	ch := make(chan events.EngineEvent)
	var log bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		enc := json.NewEncoder(&log)
		for e := range ch {
			_ = enc.Encode(e.EngineEvent)
		}
	}()
	if _, err := stack.Preview(ctx, optpreview.EventStreams(ch), optpreview.ProgressStreams(&out), optpreview.ErrorProgressStreams(&out)); err != nil {
		t.Fatalf("preview: %v\n%s", err, out.String())
	}
	<-done
	text := log.String()
	changes, err := AdminChanges(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 || changes[0].Name() != "apis-monitoring" || changes[0].What != "an API of the project" || len(changes[0].Ops) != 1 || changes[0].Ops[0] != "create" {
		t.Errorf("admin changes %+v, want only the new API (create); event log:\n%s", changes, text)
	}
	if !strings.Contains(text, `"op":"same","urn":"urn:pulumi:dev::planreview::gcp:container/cluster:Cluster::cluster"`) {
		t.Errorf("the event log does not show the cluster as same:\n%s", text)
	}
}
