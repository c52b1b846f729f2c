package classifier_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/planets-mlops/deploy/model/internal/classifier"
	"github.com/planets-mlops/deploy/model/internal/preprocess"
	"github.com/planets-mlops/deploy/model/internal/testruntime"
)

// TestParityProbabilities: Go preprocessing + onnxruntime gives the training
// code's probabilities (PyTorch) within 1e-4 for every fixture image.
func TestParityProbabilities(t *testing.T) {
	model := testruntime.LoadModel(t, 1)
	parity := testruntime.LoadParity(t)
	modelBytes, err := os.ReadFile(testruntime.ModelPath(t))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(modelBytes); hex.EncodeToString(sum[:]) != parity.ModelSHA256 {
		t.Fatalf("the fixture was made for another model (sha256 %s); rerun training/make_fixtures.py", parity.ModelSHA256)
	}
	if !slices.Equal(model.Labels(), parity.Labels) {
		t.Fatalf("labels %v, fixture has %v", model.Labels(), parity.Labels)
	}
	for _, img := range parity.Images {
		input := make([]float32, preprocess.Len)
		err := preprocess.Tensor(context.Background(), img.Data, preprocess.Limits{MaxPixels: 1 << 24, MaxJPEGScans: 100}, input)
		if err != nil {
			t.Fatalf("%s: %v", img.File, err)
		}
		pred, err := model.Predict(context.Background(), input)
		if err != nil {
			t.Fatalf("%s: %v", img.File, err)
		}
		var worst float64
		for i, want := range img.Probabilities {
			worst = math.Max(worst, math.Abs(float64(pred.Probabilities[i])-want))
		}
		if worst > 1e-4 || pred.Label != img.Prediction {
			t.Errorf("%s: prediction %s (want %s), max |p_go - p_python| = %g (want <= 1e-4)", img.File, pred.Label, img.Prediction, worst)
		}
		t.Logf("%-22s %-8s max diff %.2g", img.File, pred.Label, worst)
	}
}

func TestConcurrentPredictions(t *testing.T) {
	model := testruntime.LoadModel(t, 2)
	img := testruntime.LoadParity(t).Images[0]
	input := make([]float32, preprocess.Len)
	err := preprocess.Tensor(context.Background(), img.Data, preprocess.Limits{MaxPixels: 1 << 24, MaxJPEGScans: 100}, input)
	if err != nil {
		t.Fatal(err)
	}
	want, err := model.Predict(context.Background(), input)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				got, err := model.Predict(context.Background(), input)
				if err != nil || !slices.Equal(got.Probabilities, want.Probabilities) {
					t.Errorf("concurrent Predict = %v, %v; want %v", got, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestPredictRejectsWrongInputSize(t *testing.T) {
	model := testruntime.LoadModel(t, 1)
	if _, err := model.Predict(context.Background(), make([]float32, 3)); err == nil {
		t.Fatal("want an error")
	}
}

func TestSoftmax(t *testing.T) {
	got := classifier.Softmax([]float32{1000, 1000, -1000})
	if math.Abs(float64(got[0])-0.5) > 1e-7 || got[2] != 0 {
		t.Fatalf("Softmax = %v", got)
	}
}

func BenchmarkPredict(b *testing.B) {
	model := testruntime.LoadModel(b, 1)
	input := make([]float32, preprocess.Len)
	err := preprocess.Tensor(context.Background(), testruntime.LoadParity(b).Images[0].Data, preprocess.Limits{MaxPixels: 1 << 24, MaxJPEGScans: 100}, input)
	if err != nil {
		b.Fatal(err)
	}
	var times []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := model.Predict(context.Background(), input); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(start))
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Nanoseconds())/1000, "median-us")
}
