package evaluate_test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/planets-mlops/deploy/model/internal/evaluate"
	"github.com/planets-mlops/deploy/model/internal/testruntime"
)

// The report of a model DVC tracks names it by MD5 too (cmd/evaluate -md5,
// see docs/coming-from-the-guide-dvc.md): the image build's check reads it
// and passes the model it names.
func TestAReportMayNameTheModelByMD5(t *testing.T) {
	opts := committed(t)
	report, err := evaluate.Read(opts.ReportPath)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(opts.ModelPath)
	if err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(raw)
	report.Model.MD5 = hex.EncodeToString(sum[:])
	opts.ReportPath = filepath.Join(t.TempDir(), "report.json")
	if err := report.Write(opts.ReportPath); err != nil {
		t.Fatal(err)
	}
	back, err := evaluate.Read(opts.ReportPath)
	if err != nil {
		t.Fatalf("a report with the model's md5 is refused: %v", err)
	}
	if back.Model.MD5 != report.Model.MD5 {
		t.Fatalf("read back md5 %q, wrote %q", back.Model.MD5, report.Model.MD5)
	}

	testruntime.Init(t)
	if _, err := evaluate.Check(context.Background(), opts); err != nil {
		t.Fatalf("the image build's check refuses a DVC model's report: %v", err)
	}
}
