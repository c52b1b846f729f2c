package program

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/planets-mlops/deploy/internal/config"
	"github.com/planets-mlops/deploy/internal/fingerprint"
	"github.com/planets-mlops/deploy/internal/modelreport"
)

// readModel reads the model in m.Dir once: it fingerprints the image's
// build context (what the image component stages and tags, and the pods
// carry), then checks that the report beside the model is this model's and
// holds it to the gate, against the default branch's report when one is
// given. It logs the figures it passed on. No image is pushed and no
// resource changes for a model whose report is stale or below the gate.
//
// A model file DVC tracks (mlops:modelDvcFile) is known by the MD5 DVC
// recorded: the fingerprint and the report's check use it, and its bytes
// are fetched only when the image is built (infra.ModelImage).
func readModel(ctx *pulumi.Context, m config.Model, target config.Target) (*fingerprint.BuildContext, *dvcModel, error) {
	// The files the settings name are checked as the settings are, before
	// the model's own figures.
	baseline, err := readBaseline(m.BaselineReport)
	if err != nil {
		return nil, nil, config.Invalid(err)
	}
	var fromDVC *dvcModel
	var externals []fingerprint.External
	if m.DVCFile != "" {
		if fromDVC, err = readDVCModel(m, target); err != nil {
			return nil, nil, config.Invalid(err)
		}
		externals = append(externals, fromDVC.external(ctx.Context()))
	}
	dir := filepath.Clean(m.Dir)
	model, err := fingerprint.Read(ctx.Context(), dir, m.BuildInputs(), externals...)
	if err != nil {
		return nil, nil, config.Invalid(fmt.Errorf("%s:modelDir: %w", config.Namespace, err))
	}
	var report *modelreport.Report
	if fromDVC != nil {
		report, err = modelreport.ForDVCOutput(dir, fromDVC.output.MD5, fromDVC.output.Size, fromDVC.output.RecordedIn)
	} else {
		report, err = modelreport.ForModel(dir)
	}
	if err != nil {
		return nil, nil, err
	}
	if err := m.Gate.Check(report, baseline, m.BaselineReport); err != nil {
		return nil, nil, err
	}
	against := "no baseline report given (" + config.BaselineReportEnv + "): the drop is not checked"
	if baseline != nil {
		against = fmt.Sprintf("baseline %.1f%% (%s)", baseline.Accuracy*100, m.BaselineReport)
	}
	if err := ctx.Log.Info(fmt.Sprintf("model gate: %s (sha256 %.12s) passes: accuracy %.1f%% (%d/%d) on the evaluation set, mlops:minAccuracy %.1f%%, mlops:maxAccuracyDrop %.1f%%, %s",
		report.Model.File, report.Model.SHA256, report.Accuracy*100, report.Correct, report.Total, m.Gate.MinAccuracy*100, m.Gate.MaxAccuracyDrop*100, against), nil); err != nil {
		return nil, nil, err
	}
	return model, fromDVC, nil
}

// readBaseline reads the default branch's model report at path
// (config.BaselineReportEnv); "" is none, and the drop is not checked.
func readBaseline(path string) (*modelreport.Report, error) {
	if path == "" {
		return nil, nil
	}
	baseline, err := modelreport.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%s=%s: no such file; expected the default branch's model report, or unset", config.BaselineReportEnv, path)
	case err != nil:
		return nil, fmt.Errorf("%s=%s: %w", config.BaselineReportEnv, path, err)
	}
	return baseline, nil
}
