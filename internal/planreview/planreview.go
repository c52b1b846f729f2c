// Package planreview reads the engine events of a `pulumi preview` (the
// file its --event-log flag writes) and lists the planned changes that CI's
// deploy identity cannot apply, so that a pull request says before merging
// that an admin's `pulumi up` is needed.
//
// The deploy account (infra.CIProjectRoles and its grants on the registry
// and the state bucket) may push images, write the state and manage
// workloads in the cluster. It holds no permission to create, change or
// delete any Google Cloud resource: the cluster, its node pool, the registry
// repository (its cleanup policy included), the enabled APIs and everything
// IAM (accounts, grants, the Workload Identity pool and provider). Nor may it
// write Kubernetes RBAC, or create, change or delete the model's Namespace
// (its Pod Security label keeps privileged pods out). Every planned change
// to one of those fails with 403 halfway through CI's `pulumi up`.
package planreview

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
)

// Change is one planned change that needs an admin.
type Change struct {
	URN  string
	Type string
	// Ops are the step operations planned for the resource, in order
	// (a replacement is create-replacement, replace, delete-replaced).
	Ops []apitype.OpType
	// What names the kind of resource, as the README lists them.
	What string
}

// Name is the resource's name, the last part of its URN.
func (c Change) Name() string { return c.URN[strings.LastIndex(c.URN, "::")+2:] }

// changing are the step operations that call the provider to change
// something; same, read, refresh and the state-only ones do not.
var changing = []apitype.OpType{
	apitype.OpCreate, apitype.OpUpdate, apitype.OpDelete, apitype.OpReplace,
	apitype.OpCreateReplacement, apitype.OpDeleteReplaced,
	apitype.OpImport, apitype.OpImportReplacement,
}

// NeedsAdmin says whether CI's deploy identity cannot change a resource of
// this type, and what the README calls it.
func NeedsAdmin(typ string) (string, bool) {
	switch {
	case typ == "gcp:container/cluster:Cluster":
		return "the GKE cluster", true
	case typ == "gcp:container/nodePool:NodePool":
		return "the node pool", true
	case typ == "gcp:artifactregistry/repository:Repository":
		return "the image registry (its cleanup policy)", true
	case typ == "gcp:projects/service:Service":
		return "an API of the project", true
	case strings.HasPrefix(typ, "gcp:serviceaccount/"), strings.HasPrefix(typ, "gcp:iam/"),
		strings.HasPrefix(typ, "gcp:") && strings.Contains(strings.ToLower(typ), "iam"):
		return "IAM (accounts, grants, Workload Identity)", true
	case strings.HasPrefix(typ, "gcp:"):
		return "a Google Cloud resource", true
	case strings.HasPrefix(typ, "kubernetes:rbac.authorization.k8s.io/"):
		return "Kubernetes RBAC", true
	case typ == "kubernetes:core/v1:Namespace":
		// The deploy identity may only read the model's Namespace
		// (infra.DeployAccess): an update could drop its
		// pod-security.kubernetes.io/enforce label, RBAC cannot limit a
		// create by name, and a delete takes everything in it.
		return "the model's Namespace (its Pod Security labels)", true
	}
	return "", false
}

// AdminChanges reads an event log (one apitype.EngineEvent JSON object a
// line) and returns the planned changes that need an admin, in the order
// the engine planned them.
func AdminChanges(events io.Reader) ([]Change, error) {
	var out []Change
	index := map[string]int{}
	scanner := bufio.NewScanner(events)
	scanner.Buffer(make([]byte, 0, 1<<20), 64<<20) // a line holds a resource's whole state
	for line := 1; scanner.Scan(); line++ {
		if len(strings.TrimSpace(scanner.Text())) == 0 {
			continue
		}
		var e apitype.EngineEvent
		if err := json.Unmarshal(scanner.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("event log line %d: %w", line, err)
		}
		if e.ResourcePreEvent == nil {
			continue
		}
		step := e.ResourcePreEvent.Metadata
		what, admin := NeedsAdmin(step.Type)
		if !admin || !slices.Contains(changing, step.Op) {
			continue
		}
		if i, seen := index[step.URN]; seen {
			out[i].Ops = append(out[i].Ops, step.Op)
			continue
		}
		index[step.URN] = len(out)
		out = append(out, Change{URN: step.URN, Type: step.Type, Ops: []apitype.OpType{step.Op}, What: what})
	}
	if err := scanner.Err(); err != nil {
		return nil, fmt.Errorf("reading the event log: %w", err)
	}
	return out, nil
}

// Markdown is the list for a pull request comment or a job log; empty when
// CI can apply everything.
func Markdown(changes []Change) string {
	if len(changes) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("These planned changes need an admin's `pulumi up --stack dev` (CI's deploy identity may not make them; its `up` would fail with 403 halfway):\n\n")
	for _, c := range changes {
		ops := make([]string, len(c.Ops))
		for i, op := range c.Ops {
			ops[i] = string(op)
		}
		fmt.Fprintf(&b, "- %s: `%s` (`%s`), %s\n", c.What, c.Name(), c.Type, strings.Join(ops, ", "))
	}
	return b.String()
}
