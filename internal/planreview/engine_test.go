package planreview

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/planets-mlops/deploy/internal/testenv/fixture"
)

// TestAdminChangesFromARealEngine reads the events of a real preview, run
// by the pinned Pulumi CLI (the Automation API has it write its --event-log
// file and decodes each line into an apitype.EngineEvent): the program's
// resources are components carrying the program's type tokens, so no cloud
// provider is needed. After an `up`, a preview that adds an API and keeps
// the cluster lists only the API.
func TestAdminChangesFromARealEngine(t *testing.T) {
	env := fixture.Pulumi(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

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
	stack := fixture.ProjectStack(ctx, t, env, "dev", fixture.Project("planreview"), program, nil)
	fixture.Up(ctx, t, stack)

	withAPI = true
	text := string(fixture.PreviewEventLog(ctx, t, stack))
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
