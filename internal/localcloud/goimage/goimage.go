// Package goimage packages one static Go program of this repository as a
// single-layer OCI image archive, made here from source: the local node's
// pods need images (the pause sandbox, test workloads) and no image registry
// can be reached. The archive is what `ctr images import` reads.
package goimage

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image describes the image Build makes.
type Image struct {
	// Package is the Go package to build, an import path of this module (or
	// a relative path from the current directory).
	Package string
	// Ref names the image, e.g. "localcloud.invalid/pause:v1". Kubernetes
	// refers to it by this name; it is never pulled.
	Ref string
	// Binary is the program's absolute path inside the image, its entrypoint.
	Binary string
	// Args are the default arguments (the image's Cmd).
	Args []string
	// User is the numeric uid[:gid] the program runs as.
	User string
	// ExposedPort, if non-zero, is declared as exposed (TCP).
	ExposedPort int
}

// Build compiles the program (statically, for linux/amd64) and writes the
// image as an OCI image-layout tar archive to archivePath. The same source
// gives the same archive, byte for byte.
func Build(ctx context.Context, image Image, archivePath string) error {
	if !path.IsAbs(image.Binary) || image.Ref == "" || image.Package == "" {
		return fmt.Errorf("goimage: need a package, a ref and an absolute binary path, got %+v", image)
	}
	tmp, err := os.MkdirTemp("", "goimage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	binary := filepath.Join(tmp, "program")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", binary, image.Package)
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("goimage: go build %s: %v\n%s", image.Package, err, out)
	}
	program, err := os.ReadFile(binary)
	if err != nil {
		return err
	}

	layer, err := layerTar(strings.TrimPrefix(image.Binary, "/"), program)
	if err != nil {
		return err
	}
	layerDesc := blobDescriptor(ocispec.MediaTypeImageLayer, layer)
	config := ocispec.Image{
		Platform: ocispec.Platform{Architecture: "amd64", OS: "linux"},
		Config: ocispec.ImageConfig{
			User:       image.User,
			Entrypoint: []string{image.Binary},
			Cmd:        image.Args,
		},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layerDesc.Digest}},
	}
	if image.ExposedPort != 0 {
		config.Config.ExposedPorts = map[string]struct{}{fmt.Sprintf("%d/tcp", image.ExposedPort): {}}
	}
	configJSON, err := json.Marshal(config)
	if err != nil {
		return err
	}
	configDesc := blobDescriptor(ocispec.MediaTypeImageConfig, configJSON)
	manifestJSON, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    configDesc,
		Layers:    []ocispec.Descriptor{layerDesc},
	})
	if err != nil {
		return err
	}
	manifestDesc := blobDescriptor(ocispec.MediaTypeImageManifest, manifestJSON)
	manifestDesc.Platform = &config.Platform
	manifestDesc.Annotations = map[string]string{
		// containerd names the imported image after this annotation.
		"io.containerd.image.name": image.Ref,
		ocispec.AnnotationRefName:  image.Ref,
	}
	indexJSON, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{manifestDesc},
	})
	if err != nil {
		return err
	}
	layoutJSON, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return err
	}

	var archive bytes.Buffer
	files := newTarWriter(&archive)
	files.file(ocispec.ImageLayoutFile, 0o644, layoutJSON)
	files.file("index.json", 0o644, indexJSON)
	for _, blob := range [][]byte{layer, configJSON, manifestJSON} {
		files.file(blobPath(blob), 0o644, blob)
	}
	if err := files.close(); err != nil {
		return err
	}
	return os.WriteFile(archivePath, archive.Bytes(), 0o644)
}

// layerTar is the image's only layer: the program at binaryPath, and /tmp.
func layerTar(binaryPath string, program []byte) ([]byte, error) {
	var layer bytes.Buffer
	files := newTarWriter(&layer)
	for dir := path.Dir(binaryPath); dir != "."; dir = path.Dir(dir) {
		files.dir(dir+"/", 0o755)
	}
	files.dir("tmp/", 0o1777)
	files.file(binaryPath, 0o755, program)
	return layer.Bytes(), files.close()
}

func blobDescriptor(mediaType string, blob []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(blob), Size: int64(len(blob))}
}

func blobPath(blob []byte) string {
	return fmt.Sprintf("blobs/sha256/%x", sha256.Sum256(blob))
}

// tarWriter writes entries owned by root with a fixed mtime, so archives are
// reproducible; the first error sticks.
type tarWriter struct {
	w   *tar.Writer
	err error
}

func newTarWriter(buf *bytes.Buffer) *tarWriter { return &tarWriter{w: tar.NewWriter(buf)} }

var epoch = time.Unix(0, 0).UTC()

func (t *tarWriter) dir(name string, mode int64) {
	if t.err == nil {
		t.err = t.w.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: epoch, Format: tar.FormatPAX})
	}
}

func (t *tarWriter) file(name string, mode int64, content []byte) {
	if t.err == nil {
		t.err = t.w.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(content)), ModTime: epoch, Format: tar.FormatPAX})
	}
	if t.err == nil {
		_, t.err = t.w.Write(content)
	}
}

func (t *tarWriter) close() error {
	if t.err != nil {
		return t.err
	}
	return t.w.Close()
}
