package program

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/planets-mlops/deploy/internal/config"
	"github.com/planets-mlops/deploy/internal/dvc"
	"github.com/planets-mlops/deploy/internal/fingerprint"
	"github.com/planets-mlops/deploy/internal/modelreport"
)

// dvcModel is the model file as a DVC output: what DVC recorded of it and
// the remote its object is fetched from.
type dvcModel struct {
	output dvc.Output
	remote dvc.Remote
	fetch  *dvc.Fetcher
	// cache is the model's entry in DVC's local cache of the repository
	// (.dvc/cache/<object key>, the remote's layout): filled by dvc pull,
	// by a fetch here, or by CI's cache of .dvc/cache in a fresh checkout.
	cache string
}

// readDVCModel reads what m.DVCFile records of the model file
// (modelreport.ModelPath in m.Dir) and the remote of .dvc/config it comes
// from. It reads files only: nothing is fetched here. Problems are the
// configuration's, named by the key.
//
// The model must be the single-file output that lands at
// <modelDir>/artifacts/planets.onnx: the guide's own `model/` output (the
// MLEM directory) cannot be, since DVC would put `/model` in .gitignore,
// over this repository's model server (docs/coming-from-the-guide-dvc.md).
func readDVCModel(m config.Model, target config.Target) (*dvcModel, error) {
	key := config.Namespace + ":modelDvcFile"
	modelFile := filepath.Join(m.Dir, filepath.FromSlash(modelreport.ModelPath))
	rel, err := filepath.Rel(filepath.Dir(m.DVCFile), modelFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	var out dvc.Output
	if dvc.IsLockFile(m.DVCFile) {
		out, err = dvc.ReadLock(m.DVCFile, filepath.ToSlash(rel))
	} else {
		out, err = dvc.ReadDVCFile(m.DVCFile)
		if err == nil && out.Path != filepath.ToSlash(rel) {
			err = fmt.Errorf("%s records %s, which is not the model file %s; expected the .dvc file of %s (dvc add %s)", m.DVCFile, out.Path, modelFile, modelFile, modelFile)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}

	repo, err := dvc.FindRepo(m.DVCFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	remote, err := dvc.ReadRemote(repo, m.DVCRemote)
	if err != nil {
		return nil, fmt.Errorf("%s:modelDvcRemote: %w", config.Namespace, err)
	}
	if target == config.TargetGKE && !remote.IsGCS() {
		return nil, fmt.Errorf("%s:modelDvcRemote: the DVC remote %q is %s; expected a gs:// remote with target gke: the pipelines fetch the model from its bucket as the deploy identity, which the stack lets read that bucket only", config.Namespace, remote.Name, remote.URL)
	}
	return &dvcModel{
		output: out,
		remote: remote,
		fetch:  dvc.NewFetcher(remote),
		cache:  filepath.Join(repo, ".dvc", "cache", filepath.FromSlash(out.ObjectKey())),
	}, nil
}

// external is the model file as the fingerprint sees it: DVC's MD5 and
// size, fetched (verified) only when an image is built.
func (d *dvcModel) external(ctx context.Context) fingerprint.External {
	return fingerprint.External{
		Path: modelreport.ModelPath,
		MD5:  d.output.MD5,
		Size: d.output.Size,
		Fetch: func(w io.Writer) error {
			return d.fetch.Fetch(ctx, d.output, w)
		},
		Cache: d.cache,
	}
}
