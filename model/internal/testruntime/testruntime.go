// Package testruntime gives tests the onnxruntime library, the committed
// model and the parity fixture. Only _test.go files import it.
package testruntime

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/planets-mlops/deploy/model/internal/classifier"
	"github.com/planets-mlops/deploy/model/internal/contract"
	"github.com/planets-mlops/deploy/model/internal/testenv"
)

// Init loads onnxruntime from $ONNXRUNTIME_LIB. Both test tiers install it
// (hack/test.sh, also --hermetic): without it the test fails when
// MLOPS_TEST_TIER is set and is skipped loudly otherwise (testenv).
func Init(t testing.TB) {
	t.Helper()
	lib := os.Getenv("ONNXRUNTIME_LIB")
	testenv.NeedTool(t, "the onnxruntime library", "from the repo root: export ONNXRUNTIME_LIB=$(model/hack/onnxruntime.sh)", func() error {
		if lib == "" {
			return errors.New("ONNXRUNTIME_LIB is not set")
		}
		return nil
	})
	if err := classifier.InitRuntime(lib); err != nil {
		t.Fatal(err)
	}
}

// ModuleRoot is the model/ directory (where go.mod is).
func ModuleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// ModelPath is the committed model.
func ModelPath(t testing.TB) string {
	return filepath.Join(ModuleRoot(t), "artifacts", "planets.onnx")
}

// LoadModel initialises the runtime and loads the committed model.
func LoadModel(t testing.TB, sessions int) *classifier.Classifier {
	t.Helper()
	Init(t)
	c, err := classifier.Load(ModelPath(t), sessions)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ParityImage is one image of the fixture that training/make_fixtures.py wrote.
type ParityImage struct {
	File          string    `json:"file"`
	Format        string    `json:"format"`
	Mode          string    `json:"mode"`
	Width         int       `json:"width"`
	Height        int       `json:"height"`
	Prediction    string    `json:"prediction"`
	Probabilities []float64 `json:"probabilities"`
	Input         []float64 `json:"input"`
	Data          []byte    `json:"-"`
}

// Parity is testdata/parity/expected.json.
type Parity struct {
	ModelSHA256 string        `json:"model_sha256"`
	Labels      []string      `json:"labels"`
	Images      []ParityImage `json:"images"`
}

// LoadParity reads the fixture and its images.
func LoadParity(t testing.TB) Parity {
	t.Helper()
	dir := filepath.Join(ModuleRoot(t), "testdata", "parity")
	raw, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var p Parity
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	for i := range p.Images {
		if p.Images[i].Data, err = os.ReadFile(filepath.Join(dir, p.Images[i].File)); err != nil {
			t.Fatal(err)
		}
	}
	if len(p.Images) == 0 {
		t.Fatal("parity fixture has no images")
	}
	return p
}

func segment(marker byte, payload ...byte) []byte {
	b := []byte{0xff, marker}
	b = binary.BigEndian.AppendUint16(b, uint16(len(payload)+2))
	return append(b, payload...)
}

// ScanBombJPEG is a progressive gray JPEG of width x height whose scans carry
// no data, its DC scan followed by scans-1 AC scans: each costs libjpeg a
// pass over the whole image (the data runs out at once; libjpeg warns and
// decodes zeros), so a few bytes a scan buy a lot of work.
func ScanBombJPEG(width, height uint16, scans int) []byte {
	b := []byte{0xff, 0xd8}
	b = append(b, segment(0xdb, append([]byte{0}, bytes.Repeat([]byte{1}, 64)...)...)...) // DQT 0: all ones
	b = append(b, segment(0xc2, 8, byte(height>>8), byte(height), byte(width>>8), byte(width), 1, 1, 0x11, 0)...)
	oneCode := append([]byte{1}, make([]byte, 15)...)                               // one code of length 1
	b = append(b, segment(0xc4, append(append([]byte{0x00}, oneCode...), 0)...)...) // DC table 0: symbol 0
	b = append(b, segment(0xc4, append(append([]byte{0x10}, oneCode...), 0)...)...) // AC table 0: EOB
	b = append(b, segment(0xda, 1, 1, 0x00, 0, 0, 0)...)                            // DC first scan
	for range scans - 1 {
		b = append(b, segment(0xda, 1, 1, 0x00, 1, 63, 0)...) // AC first scan, again
	}
	return append(b, 0xff, 0xd9)
}

// Relabel returns the ONNX model onnx with its "labels" metadata replaced
// by labels (a JSON list), every other byte as it was: the model's outputs
// then mean other classes, or another number of them. ModelProto's
// metadata_props is field 14, each a StringStringEntryProto (key 1, value 2).
func Relabel(t testing.TB, onnx []byte, labels []string) []byte {
	t.Helper()
	value, err := json.Marshal(labels)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	replaced := false
	for rest := onnx; len(rest) > 0; {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 {
			t.Fatalf("not an ONNX model: %v", protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(num, typ, rest[n:])
		if m < 0 {
			t.Fatalf("not an ONNX model: %v", protowire.ParseError(m))
		}
		field := rest[:n+m]
		rest = rest[n+m:]
		if num == 14 && typ == protowire.BytesType {
			entry, _ := protowire.ConsumeBytes(field[n:])
			if key := entryKey(entry); key == "labels" {
				var e []byte
				e = protowire.AppendTag(e, 1, protowire.BytesType)
				e = protowire.AppendString(e, "labels")
				e = protowire.AppendTag(e, 2, protowire.BytesType)
				e = protowire.AppendBytes(e, value)
				field = protowire.AppendTag(nil, 14, protowire.BytesType)
				field = protowire.AppendBytes(field, e)
				replaced = true
			}
		}
		out = append(out, field...)
	}
	if !replaced {
		t.Fatal("the model has no labels metadata")
	}
	return out
}

func entryKey(entry []byte) string {
	for len(entry) > 0 {
		num, typ, n := protowire.ConsumeTag(entry)
		if n < 0 {
			return ""
		}
		if num == 1 && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(entry[n:])
			return string(v)
		}
		m := protowire.ConsumeFieldValue(num, typ, entry[n:])
		if m < 0 {
			return ""
		}
		entry = entry[n+m:]
	}
	return ""
}

// Declare writes into dir the committed model's declaration (model.json)
// with labels instead of its own, and returns its path: the declaration of
// a model Relabel made.
func Declare(t testing.TB, dir string, labels []string) string {
	t.Helper()
	decl, err := contract.Read(contract.Path(ModelPath(t)))
	if err != nil {
		t.Fatal(err)
	}
	decl.Labels = labels
	path := filepath.Join(dir, contract.FileName)
	if err := decl.Write(path); err != nil {
		t.Fatal(err)
	}
	return path
}
