// Package dataset reads the planets dataset's held-out images: the images
// training kept out of its training set (model/artifacts/heldout.txt, 30 of
// each class), found in the dataset beside the project
// (../shared/datasets/planets, or $PLANETS_DATA: testenv.DatasetDir), and
// the confusion matrix training measured on them
// (model/artifacts/metrics.json). Dataset images are never copied into the
// repository.
package dataset

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Image is a held-out image and its class.
type Image struct {
	Class string
	Path  string
}

// HeldOut lists the held-out images of every class of the project in
// projectDir, as paths under the dataset's directory dataDir (it holds raw/).
func HeldOut(projectDir, dataDir string) ([]Image, error) {
	list, err := os.Open(filepath.Join(projectDir, "model", "artifacts", "heldout.txt"))
	if err != nil {
		return nil, err
	}
	defer list.Close()
	var images []Image
	scanner := bufio.NewScanner(list)
	for scanner.Scan() {
		rel := strings.TrimSpace(scanner.Text())
		if rel == "" {
			continue
		}
		images = append(images, Image{Class: filepath.Base(filepath.Dir(rel)), Path: filepath.Join(dataDir, filepath.FromSlash(rel))})
	}
	if err := scanner.Err(); err != nil {
		return nil, err
	}
	if len(images) == 0 {
		return nil, errors.New("model/artifacts/heldout.txt lists no image")
	}
	return images, nil
}

// Confusion counts answers: Confusion[true class][predicted class].
type Confusion map[string]map[string]int

// Add counts one answer.
func (c Confusion) Add(class, predicted string) {
	if c[class] == nil {
		c[class] = map[string]int{}
	}
	c[class][predicted]++
}

// TrainingConfusion is the held-out confusion matrix training measured.
func TrainingConfusion(projectDir string) (Confusion, error) {
	raw, err := os.ReadFile(filepath.Join(projectDir, "model", "artifacts", "metrics.json"))
	if err != nil {
		return nil, err
	}
	var metrics struct {
		Confusion struct {
			Labels []string `json:"labels"`
			Rows   [][]int  `json:"rows_true_cols_predicted"`
		} `json:"confusion_matrix"`
	}
	if err := json.Unmarshal(raw, &metrics); err != nil {
		return nil, fmt.Errorf("model/artifacts/metrics.json: %w", err)
	}
	c := Confusion{}
	for i, class := range metrics.Confusion.Labels {
		if i >= len(metrics.Confusion.Rows) || len(metrics.Confusion.Rows[i]) != len(metrics.Confusion.Labels) {
			return nil, fmt.Errorf("model/artifacts/metrics.json: confusion row %d does not match the %d labels", i, len(metrics.Confusion.Labels))
		}
		for j, n := range metrics.Confusion.Rows[i] {
			for range n {
				c.Add(class, metrics.Confusion.Labels[j])
			}
		}
	}
	return c, nil
}
