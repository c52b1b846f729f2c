// Command evaluate measures the model on the evaluation set with the
// server's own decoding, preprocessing and classifier, fed as its
// declaration (model.json beside the model, internal/contract) says, and
// writes its report (artifacts/report.json by default; see internal/evaluate). Run it
// after every training run and commit the report with the model: the deploy
// program refuses a model whose report is missing or of another model, and
// the image build fails when the set does not give the report's answers.
//
// An unchanged model keeps its report as it is, timings included (they
// vary from run to run, and the report is part of the image's fingerprint);
// -remeasure writes new ones.
//
// Usage (in model/, ONNXRUNTIME_LIB set):
//
//	go run ./cmd/evaluate [-model artifacts/planets.onnx] [-eval-dir eval] [-out artifacts/report.json] [-md5]
//
// -md5 records the model's MD5 too, for a model DVC tracks: the deploy
// program matches the report to dvc.lock (or the .dvc file) by it.
package main

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/planets-mlops/deploy/model/internal/classifier"
	"github.com/planets-mlops/deploy/model/internal/evaluate"
)

func main() {
	modelPath := flag.String("model", filepath.Join("artifacts", "planets.onnx"), "the ONNX model")
	evalDir := flag.String("eval-dir", "eval", "the evaluation set: <label>/<image> files")
	out := flag.String("out", filepath.Join("artifacts", "report.json"), "the report to write; - for stdout")
	rounds := flag.Int("rounds", 20, "timed passes over the set for the latency (at least 1)")
	remeasure := flag.Bool("remeasure", false, "write new timings even when the model's answers are unchanged")
	withMD5 := flag.Bool("md5", false, "record the model's MD5 (DVC's content address) in the report: for a model DVC tracks")
	lib := flag.String("onnxruntime-lib", os.Getenv("ONNXRUNTIME_LIB"), "onnxruntime shared library (env ONNXRUNTIME_LIB; model/hack/onnxruntime.sh prints it)")
	flag.Parse()
	if err := run(*modelPath, *evalDir, *out, *lib, *rounds, *remeasure, *withMD5); err != nil {
		fmt.Fprintln(os.Stderr, "evaluate:", err)
		os.Exit(1)
	}
}

func run(modelPath, evalDir, out, lib string, rounds int, remeasure, withMD5 bool) error {
	if lib == "" {
		return errors.New("no onnxruntime library: export ONNXRUNTIME_LIB=$(model/hack/onnxruntime.sh) (from the repository root) or pass -onnxruntime-lib")
	}
	if rounds < 1 {
		return fmt.Errorf("-rounds %d: want at least 1", rounds)
	}
	if err := classifier.InitRuntime(lib); err != nil {
		return err
	}
	model, err := classifier.Load(modelPath, 1)
	if err != nil {
		return err
	}
	defer model.Close()
	set, err := evaluate.LoadSet(evalDir)
	if err != nil {
		return err
	}
	report, err := evaluate.Evaluate(context.Background(), model, modelPath, set, evaluate.Options{Rounds: rounds})
	if err != nil {
		return err
	}
	if withMD5 {
		if report.Model.MD5, err = fileMD5(modelPath); err != nil {
			return err
		}
	}
	if out != "-" && !remeasure {
		old, err := evaluate.Read(out)
		switch {
		// Kept only when it names the model by MD5 as asked: a report
		// written without -md5 gains it.
		case err == nil && len(evaluate.Differences(old, report)) == 0 && (!withMD5 || old.Model.MD5 == report.Model.MD5):
			fmt.Fprintf(os.Stderr, "evaluate: %s already holds this model's answers on %s; left as it is (-remeasure for new timings)\n", out, evalDir)
			return summary(old)
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			fmt.Fprintf(os.Stderr, "evaluate: replacing %s: %v\n", out, err)
		}
	}
	if out == "-" {
		raw, err := report.JSON()
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(raw)
		return err
	}
	if err := report.Write(out); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "evaluate: wrote %s\n", out)
	return summary(report)
}

func summary(r *evaluate.Report) error {
	var classes []string
	for _, c := range r.Classes {
		classes = append(classes, fmt.Sprintf("%s %d/%d", c.Label, c.Correct, c.Total))
	}
	fmt.Printf("accuracy %.4f (%d/%d); %s\n", r.Accuracy, r.Correct, r.Total, strings.Join(classes, ", "))
	fmt.Printf("per image: p50 %.3f ms, p99 %.3f ms (inference p50 %.3f ms, p99 %.3f ms) on %s\n",
		r.Latency.TotalP50Ms, r.Latency.TotalP99Ms, r.Latency.InferenceP50Ms, r.Latency.InferenceP99Ms, r.Latency.MeasuredOn)
	fmt.Printf("model %s: %d bytes, sha256 %s\n", r.Model.File, r.Model.Bytes, r.Model.SHA256)
	return nil
}

// fileMD5 is the hex MD5 of the file at path, as DVC records it.
func fileMD5(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
