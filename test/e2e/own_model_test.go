package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"k8s.io/client-go/kubernetes"

	"github.com/planets-mlops/deploy/internal/localcloud/cluster"
	"github.com/planets-mlops/deploy/internal/localcloud/pulumienv"
	"github.com/planets-mlops/deploy/internal/modelreport"
	"github.com/planets-mlops/deploy/internal/testenv/fixture"
)

// e2eGuideModel is a model unlike ours (training/make_test_models.py): the
// MLOps guide's Keras architecture with the I/O a tf2onnx export has (NHWC
// input "conv2d_input", bilinear resize, logits "dense_1"), with its
// declaration and its report on the committed evaluation set.
const e2eGuideModel = "model/testdata/models/guide/artifacts"

// A model that is not ours, deployed by the real engine to the real node:
// the image build's -check passes with its declaration, the pods serve it,
// and /predict answers every image of the evaluation set in MLEM's shape
// exactly as its report says (the right label wherever the report does).
func TestE2ERealNodeServesAModelUnlikeOurs(t *testing.T) {
	pulumiEnv := fixture.Pulumi(t)
	env := e2eRealNodeEnvironment(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	modelDir := e2eCopyModel(t, pulumiEnv.Dir)
	fixture.UseModel(t, modelDir, e2eGuideModel)
	report, err := modelreport.ForModel(modelDir)
	if err != nil {
		t.Fatal(err)
	}
	image := env.build(ctx, t, modelDir)
	local := fixture.Cluster(ctx, t, cluster.Options{
		RealNode: true, Registries: []string{env.registry}, Dir: filepath.Join(pulumiEnv.Dir, "cluster"),
	})
	kube, err := kubernetes.NewForConfig(local.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	stack := e2eStack(ctx, t, pulumiEnv, pulumienv.KubernetesTarget(local, image, modelDir, "NodePort"), map[string]auto.ConfigValue{
		"mlops:progressDeadlineSeconds": {Value: e2eProgressDeadline},
	})
	fixture.Up(ctx, t, stack)
	baseURL := e2eNodePortURL(ctx, t, kube)
	e2eServingPods(ctx, t, kube, image)

	client := &http.Client{Timeout: 10 * time.Second}
	right := 0
	for _, answer := range report.Images {
		raw, err := os.ReadFile(filepath.Join(modelDir, "eval", filepath.FromSlash(answer.File)))
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		form := multipart.NewWriter(&body)
		part, _ := form.CreateFormFile("file", filepath.Base(answer.File))
		part.Write(raw)
		form.Close()
		text, err := e2ePredict(ctx, client, baseURL, body.Bytes(), form.FormDataContentType())
		if err != nil {
			t.Fatalf("%s: %v", answer.File, err)
		}
		var got struct {
			Prediction    string             `json:"prediction"`
			Probabilities map[string]float64 `json:"probabilities"`
		}
		if err := json.Unmarshal([]byte(text), &got); err != nil {
			t.Fatalf("%s: %v: %s", answer.File, err, text)
		}
		labels := make([]string, 0, len(got.Probabilities))
		for l := range got.Probabilities {
			labels = append(labels, l)
		}
		slices.Sort(labels)
		if got.Prediction != answer.Predicted || !slices.Equal(labels, report.Model.Labels) {
			t.Errorf("%s: /predict answers %s with labels %v; the report says %s, labels %v", answer.File, got.Prediction, labels, answer.Predicted, report.Model.Labels)
		}
		if got.Prediction == answer.Label {
			right++
		}
	}
	t.Logf("PROOF the guide-shaped model (NHWC, bilinear, logits) on the real node: %d of %d evaluation images answered with the right label (report: %d)", right, len(report.Images), report.Correct)
	if right != report.Correct {
		t.Errorf("%d right, the report says %d", right, report.Correct)
	}
}
