package infra

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/artifactregistry"
	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/container"
	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/serviceaccount"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/internals"
)

// Collisions finds, in a preview, the resources the stack is about to
// create under a fixed name that exist already: the cluster, the registry
// repository and the service accounts. GCP
// would refuse each create with 409 "already exists", the cluster's after
// minutes and after everything else was created.
//
// Which resources are about to be created is what the engine says: in a
// preview it answers a resource of the stack's state with its ID and one it
// plans to create with an unknown ID. Only those are looked up, with
// read-only invokes, so a stack's own resources are never collisions and a
// preview or `up` of an existing stack (CI's, whose identity cannot read
// IAM) calls nothing more than before. `pulumi up` previews first, so a
// collision stops it before anything is created; in the update itself every
// name was checked already and nothing is looked up.
type Collisions struct {
	checks []nameCheck
}

// nameCheck is one resource declared under a fixed name.
type nameCheck struct {
	resource  pulumi.CustomResource
	component pulumi.Resource // its parent, which an import needs too
	kind      string          // "GKE cluster"
	configKey string          // the key that chooses another name
	// lookup awaits the resource's name and place (known in a preview: they
	// are inputs) and looks it up. It returns what to call it, its import
	// id, and whether it exists, with a note on its condition.
	lookup func(ctx *pulumi.Context) (lookupResult, error)
}

type lookupResult struct {
	name, where, importID string
	exists                bool
	note                  string
	// unknown says the lookup could not tell, with the reason.
	unknown string
}

// Cluster checks the GKE cluster.
func (c *Collisions) Cluster(cluster *GKECluster) {
	r := cluster.Cluster
	c.checks = append(c.checks, nameCheck{resource: r, component: cluster, kind: "GKE cluster", configKey: "clusterName",
		lookup: func(ctx *pulumi.Context) (lookupResult, error) {
			project, location, name, err := await3(ctx, r.Project, r.Location, r.Name)
			if err != nil {
				return lookupResult{}, err
			}
			res := lookupResult{
				name: name, where: fmt.Sprintf("in %s of project %s", location, project),
				importID: fmt.Sprintf("projects/%s/locations/%s/clusters/%s", project, location, name),
			}
			found, err := container.LookupCluster(ctx, &container.LookupClusterArgs{Project: &project, Location: &location, Name: name})
			res.exists, res.unknown, err = classify(err)
			if err != nil || !res.exists {
				return res, err
			}
			var notes []string
			if len(found.WorkloadIdentityConfigs) == 0 || found.WorkloadIdentityConfigs[0].WorkloadPool == "" {
				notes = append(notes, "it has no Workload Identity")
			}
			for _, pool := range found.NodePools {
				if pool.Name == "default-pool" {
					notes = append(notes, "it still has its default node pool")
				}
			}
			if len(notes) > 0 {
				res.note = strings.Join(notes, " and ") + ": it cannot be adopted as it is (see docs/coming-from-the-guide.md)"
			}
			return res, nil
		}})
}

// Registry checks the Artifact Registry repository.
func (c *Collisions) Registry(registry *ModelRegistry) {
	r := registry.Repository
	c.checks = append(c.checks, nameCheck{resource: r, component: registry, kind: "Artifact Registry repository", configKey: "repositoryId",
		lookup: func(ctx *pulumi.Context) (lookupResult, error) {
			project, location, id, err := await3(ctx, r.Project, r.Location, r.RepositoryId)
			if err != nil {
				return lookupResult{}, err
			}
			res := lookupResult{
				name: id, where: fmt.Sprintf("in %s of project %s", location, project),
				importID: fmt.Sprintf("projects/%s/locations/%s/repositories/%s", project, location, id),
			}
			_, err = artifactregistry.LookupRepository(ctx, &artifactregistry.LookupRepositoryArgs{Project: &project, Location: location, RepositoryId: id})
			res.exists, res.unknown, err = classify(err)
			return res, err
		}})
}

// ServiceAccount checks a service account, whose id configKey chooses.
func (c *Collisions) ServiceAccount(account *serviceaccount.Account, component pulumi.Resource, configKey string) {
	c.checks = append(c.checks, nameCheck{resource: account, component: component, kind: "service account", configKey: configKey,
		lookup: func(ctx *pulumi.Context) (lookupResult, error) {
			project, id, _, err := await3(ctx, account.Project, account.AccountId, account.AccountId)
			if err != nil {
				return lookupResult{}, err
			}
			email := fmt.Sprintf("%s@%s.iam.gserviceaccount.com", id, project)
			res := lookupResult{name: email, where: "in project " + project, importID: fmt.Sprintf("projects/%s/serviceAccounts/%s", project, email)}
			found, err := serviceaccount.LookupAccount(ctx, &serviceaccount.LookupAccountArgs{Project: &project, AccountId: id})
			res.exists, res.unknown, err = classify(err)
			if err == nil && res.exists && found.Disabled {
				res.note = "it is disabled"
			}
			return res, err
		}})
}

// Check looks up, in a preview, every checked resource the stack is about
// to create, and fails with one paragraph per resource that exists. Outside
// a preview it does nothing.
func (c *Collisions) Check(ctx *pulumi.Context) error {
	if !ctx.DryRun() {
		return nil
	}
	var found []string
	for _, check := range c.checks {
		id, err := internals.UnsafeAwaitOutput(ctx.Context(), check.resource.ID())
		if err != nil {
			return err
		}
		if id.Known {
			continue // in the stack's state: the stack's own
		}
		res, err := check.lookup(ctx)
		if err != nil {
			return fmt.Errorf("looking up whether the %s exists already: %w", check.kind, err)
		}
		if res.unknown != "" {
			_ = ctx.Log.Warn(fmt.Sprintf("could not check whether the %s %s exists %s (%s); if it does, creating it fails with 409 \"already exists\"",
				check.kind, res.name, res.where, res.unknown), nil)
			continue
		}
		if res.exists {
			msg, err := c.message(ctx, check, res)
			if err != nil {
				return err
			}
			found = append(found, msg)
		}
	}
	if len(found) == 0 {
		return nil
	}
	return fmt.Errorf("%d resource(s) this stack would create exist already; nothing was created.\n\n%s",
		len(found), strings.Join(found, "\n\n"))
}

// message names what exists, where, and the two ways forward.
func (c *Collisions) message(ctx *pulumi.Context, check nameCheck, res lookupResult) (string, error) {
	importFile, fileName, err := importFileFor(ctx, check, res)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "The %s %s exists already %s, and this stack did not create it.", check.kind, res.name, res.where)
	if res.note != "" {
		fmt.Fprintf(&b, " Note: %s.", res.note)
	}
	fmt.Fprintf(&b, "\nEither choose another name:\n    pulumi config set %s:%s <another-name>", ctx.Project(), check.configKey)
	fmt.Fprintf(&b, "\nor adopt it into the stack (it is then managed, and deleted, by the stack like anything it created):\n")
	fmt.Fprintf(&b, "    printf '%%s\\n' '%s' > %s\n", importFile, fileName)
	fmt.Fprintf(&b, "    pulumi import --stack %s --file %s --generate-code=false --protect=false\n", ctx.Stack(), fileName)
	b.WriteString("and then `pulumi preview` shows what the program would change on it.")
	return b.String(), nil
}

// importFileFor is the `pulumi import --file` document that adopts the
// resource under the URN the program gives it: as the child of its
// component, which the file declares too (an import skips a component the
// state holds already).
func importFileFor(ctx *pulumi.Context, check nameCheck, res lookupResult) (string, string, error) {
	urn, err := internals.UnsafeAwaitOutput(ctx.Context(), check.resource.URN())
	if err != nil {
		return "", "", err
	}
	parentURN, err := internals.UnsafeAwaitOutput(ctx.Context(), check.component.URN())
	if err != nil {
		return "", "", err
	}
	typ, name := urnTypeAndName(string(urn.Value.(pulumi.URN)))
	parentType, parentName := urnTypeAndName(string(parentURN.Value.(pulumi.URN)))
	type entry struct {
		Type        string `json:"type"`
		Name        string `json:"name"`
		LogicalName string `json:"logicalName"`
		ID          string `json:"id,omitempty"`
		Parent      string `json:"parent,omitempty"`
		Component   bool   `json:"component,omitempty"`
	}
	doc, err := json.Marshal(map[string][]entry{"resources": {
		{Type: parentType, Name: "parent", LogicalName: parentName, Component: true},
		{Type: typ, Name: "resource", LogicalName: name, ID: res.importID, Parent: "parent"},
	}})
	return string(doc), "adopt-" + name + ".json", err
}

// urnTypeAndName splits urn:pulumi:stack::project::parent$type::name.
func urnTypeAndName(urn string) (typ, name string) {
	parts := strings.SplitN(urn, "::", 4)
	if len(parts) < 4 {
		return "", urn
	}
	types := strings.Split(parts[2], "$")
	return types[len(types)-1], parts[3]
}

// classify reads a lookup's error: nil means the resource exists; the
// provider's "<id> not found" (transport_tpg.HandleDataSourceNotFoundError
// and the data sources' own check) means it does not; so does a disabled
// API, which cannot hold any. A 403 leaves it unknown: the caller may not
// read it. Anything else is an error.
func classify(err error) (exists bool, unknown string, _ error) {
	if err == nil {
		return true, "", nil
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, " not found"):
		return false, "", nil
	case strings.Contains(msg, "SERVICE_DISABLED") || strings.Contains(msg, "has not been used in project"):
		return false, "", nil
	case strings.Contains(msg, "Error 403") || strings.Contains(msg, "PERMISSION_DENIED"):
		return false, "permission denied", nil
	}
	return false, "", err
}

// await3 awaits three string outputs that a preview knows (resource inputs).
func await3(ctx *pulumi.Context, a, b, c pulumi.StringOutput) (string, string, string, error) {
	var out [3]string
	for i, o := range []pulumi.StringOutput{a, b, c} {
		v, err := internals.UnsafeAwaitOutput(context.WithoutCancel(ctx.Context()), o)
		if err != nil {
			return "", "", "", err
		}
		s, ok := v.Value.(string)
		if !v.Known || !ok {
			return "", "", "", errors.New("a name or place is not known in the preview")
		}
		out[i] = s
	}
	return out[0], out[1], out[2], nil
}
