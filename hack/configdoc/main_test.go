package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The committed reference is what Pulumi.yaml gives: a key added, removed
// or described anew in one and not the other fails here.
func TestReferenceIsPulumiYAMLs(t *testing.T) {
	project := read(t, source)
	want, err := Render(project)
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, target); !bytes.Equal(got, want) {
		t.Errorf("%s is not what %s gives: run `go run ./hack/configdoc` from the repository's root and commit both", target, source)
	}
}

// Render takes every key, in order, under its section, with its type,
// default and description, and the template's questions, gcp:project
// among them; a change of one description changes the reference.
func TestRenderTakesEveryKey(t *testing.T) {
	project := []byte(`name: mlops
template:
  config:
    gcp:project:
      description: The GCP project.
    mlops:clusterName:
      description: The cluster.
      default: mlops-planets
config:
  target:
    type: string
    default: gke
    description: Where | the model runs.
  # --- GCP (target: gke) ---------------------------
  region:
    type: string
    default: europe-west6
    description: >
      The region of
      the registry.
  loadBalancerAddress:
    type: string
    default: ""
    description: An address named <name>, or ` + "`<name>`" + ` in code.
`)
	got, err := Render(project)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| `gcp:project` | (none) | The GCP project. |\n",
		"| `mlops:clusterName` | `mlops-planets` | The cluster. |\n",
		"## General\n\n| key | type | default | what |\n| --- | --- | --- | --- |\n| `mlops:target` | string | `gke` | Where \\| the model runs. |\n",
		"## GCP (target: gke)\n\n| key | type | default | what |\n| --- | --- | --- | --- |\n| `mlops:region` | string | `europe-west6` | The region of the registry. |\n| `mlops:loadBalancerAddress` | string | \"\" | An address named &lt;name&gt;, or `<name>` in code. |\n",
	} {
		if !strings.Contains(string(got), want) {
			t.Errorf("the reference lacks\n%s\nin:\n%s", want, got)
		}
	}
	changed, err := Render(bytes.Replace(project, []byte("An address"), []byte("Another address"), 1))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(changed, got) {
		t.Error("a changed description gives the same reference")
	}
	for _, bad := range []string{
		"name: mlops\nconfig:\n  target:\n    type: string\n",                                                                  // no description
		"name: mlops\nconfig:\n  target:\n    type: string\n    description: x\n",                                              // no template
		"name: mlops\ntemplate:\n  config:\n    gcp:project:\n      description: p\n",                                          // no config
		"name: mlops\ntemplate:\n  config:\n    gcp:project:\n      description: p\nconfig:\n  target:\n    description: [x\n", // not YAML
	} {
		if _, err := Render([]byte(bad)); err == nil {
			t.Errorf("Render accepted %q", bad)
		}
	}
}

func read(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
