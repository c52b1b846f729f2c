// Package pulumienv is an isolated Pulumi environment on this machine, for
// the local main job (internal/localcloud/deploy) and every test that drives
// the real engine: the toolchain's pulumi CLI and Kubernetes provider first
// on PATH, a private PULUMI_HOME and file:// backend, a throwaway passphrase,
// no update check and no ambient kubeconfig that could point at a real
// cluster. It also holds the stack configuration of the program's
// kubernetes target on a local cluster, which the main job and the
// end-to-end tests share.
package pulumienv

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/common/workspace"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/planets-mlops/deploy/internal/localcloud/cluster"
)

// Env is an isolated Pulumi environment under Dir.
type Env struct {
	// Dir holds the environment's PULUMI_HOME (home/) and backend (state/);
	// the caller may keep other files of its run there too.
	Dir string
	// ToolchainBin holds pulumi and pulumi-resource-kubernetes
	// (hack/toolchain.sh prints it).
	ToolchainBin string
	// Vars are the environment variables that make a pulumi CLI, and the
	// providers it starts, use only this environment.
	Vars map[string]string
}

// New makes an environment under dir (created if need be) with the
// binaries in toolchainBin.
func New(dir, toolchainBin string) (*Env, error) {
	for _, sub := range []string{"home", "state"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	return &Env{
		Dir:          dir,
		ToolchainBin: toolchainBin,
		Vars: map[string]string{
			"PATH":                     toolchainBin + string(os.PathListSeparator) + os.Getenv("PATH"),
			"PULUMI_HOME":              filepath.Join(dir, "home"),
			"PULUMI_BACKEND_URL":       "file://" + filepath.Join(dir, "state"),
			"PULUMI_CONFIG_PASSPHRASE": rand.Text(),
			"PULUMI_SKIP_UPDATE_CHECK": "true",
			"KUBECONFIG":               filepath.Join(dir, "no-ambient-kubeconfig"),
		},
	}, nil
}

// StateDir is the backend's directory: the stacks' state files.
func (e *Env) StateDir() string { return filepath.Join(e.Dir, "state") }

// LoadProject reads the project settings (and so the config defaults) of
// projectDir/Pulumi.yaml.
func LoadProject(projectDir string) (workspace.Project, error) {
	project, err := workspace.LoadProject(filepath.Join(projectDir, "Pulumi.yaml"))
	if err != nil {
		return workspace.Project{}, err
	}
	return *project, nil
}

// InlineStack creates (or selects) stack of the inline program with the
// project settings given, run by this environment's pulumi CLI in workDir
// (the program's project directory for the engine) and configured with
// config. The CLI's environment is the calling process's unless opts adds
// auto.EnvVars(e.Vars): a test sets e.Vars in its own environment instead
// (so it can switch a variable between steps), a command passes them here.
func (e *Env) InlineStack(ctx context.Context, stack string, project workspace.Project, program pulumi.RunFunc, workDir string, config map[string]auto.ConfigValue, opts ...auto.LocalWorkspaceOption) (auto.Stack, error) {
	cli, err := auto.NewPulumiCommand(&auto.PulumiCommandOptions{Root: filepath.Dir(e.ToolchainBin)})
	if err != nil {
		return auto.Stack{}, fmt.Errorf("pulumi CLI in %s: %w", e.ToolchainBin, err)
	}
	opts = append([]auto.LocalWorkspaceOption{auto.Project(project), auto.Pulumi(cli), auto.WorkDir(workDir)}, opts...)
	s, err := auto.UpsertStackInlineSource(ctx, stack, project.Name.String(), program, opts...)
	if err != nil {
		return auto.Stack{}, err
	}
	if len(config) > 0 {
		if err := s.SetAllConfig(ctx, config); err != nil {
			return auto.Stack{}, err
		}
	}
	return s, nil
}

// KubernetesTarget is the stack configuration of the program on the
// kubernetes target of a local cluster: its kubeconfig (a secret), the
// prebuilt image pinned by digest, the model's build context modelDir (the
// fingerprint) and the Service's type (kube-proxy serves NodePorts on
// 127.0.0.1; a LoadBalancer never gets an address here). Callers add their
// own keys to it.
func KubernetesTarget(c *cluster.Cluster, image, modelDir, serviceType string) map[string]auto.ConfigValue {
	return map[string]auto.ConfigValue{
		"mlops:target":      {Value: "kubernetes"},
		"mlops:kubeconfig":  {Value: string(c.Kubeconfig), Secret: true},
		"mlops:kubeContext": {Value: cluster.ContextName},
		"mlops:image":       {Value: image},
		"mlops:modelDir":    {Value: modelDir},
		"mlops:serviceType": {Value: serviceType},
	}
}
