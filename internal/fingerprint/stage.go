package fingerprint

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// StagingDir is where a deployment stages the model image's normalized build
// context, relative to its project root (the directory of Pulumi.yaml), and
// the path it hands docker, relative too: pulumi-docker's provider resolves a
// relative context against the engine's project directory, whatever the
// program's own working directory (an Automation API inline program's is the
// caller's), and an absolute one would make every checkout path a rebuild.
const StagingDir = ".build/model-context"

// markerSuffix names the file beside a staged context that records its
// fingerprint, so an unchanged model is not copied again on every run.
const markerSuffix = ".fingerprint"

// Stage writes the files of c, and nothing else, into dst with normalized
// modes (0644, or 0755 when executable). A build tool that hashes permission
// bits, such as pulumi-docker's Image, then sees its context change exactly
// when the fingerprint does. dst is replaced whole; it is left alone when it
// already holds c's fingerprint (the common, unchanged case). Nothing is
// fingerprinted again: each file is checked against the digest Read took as
// it is copied, so a model that changed since it was read is refused, not
// staged under the old fingerprint.
func (c *BuildContext) Stage(dst string) error {
	marker := filepath.Clean(dst) + markerSuffix
	if isStaged(dst, marker, c.Fingerprint) {
		return nil
	}
	if err := os.RemoveAll(dst); err != nil {
		return fmt.Errorf("staging the build context: %w", err)
	}
	os.Remove(marker)
	for _, e := range c.entries {
		if err := stageEntry(c.Dir, dst, e); err != nil {
			// Nothing half-staged stays behind for a build to pick up.
			os.RemoveAll(dst)
			return fmt.Errorf("staging the build context: %w", err)
		}
	}
	// Directories get one mode too, whatever the umask made of them.
	err := filepath.WalkDir(dst, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return os.Chmod(path, 0o755)
	})
	if err != nil {
		return fmt.Errorf("staging the build context: %w", err)
	}
	if err := os.WriteFile(marker, []byte(c.Fingerprint), 0o644); err != nil {
		return fmt.Errorf("staging the build context: %w", err)
	}
	return nil
}

// isStaged tells whether dst holds the build context of fingerprint fp.
func isStaged(dst, marker, fp string) bool {
	staged, err := os.ReadFile(marker)
	if err != nil || string(staged) != fp {
		return false
	}
	_, err = os.Stat(dst)
	return err == nil
}

func stageEntry(dir, dst string, e *entry) error {
	target := filepath.Join(dst, filepath.FromSlash(e.path))
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	if e.symlink != "" {
		return os.Symlink(filepath.FromSlash(e.symlink), target)
	}
	mode := os.FileMode(0o644)
	if e.executable {
		mode = 0o755
	}
	src, err := os.Open(filepath.Join(dir, filepath.FromSlash(e.path)))
	if err != nil {
		return err
	}
	defer src.Close()
	out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	copied := sha256.New()
	if _, err := io.Copy(io.MultiWriter(out, copied), src); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if !bytes.Equal(copied.Sum(nil), e.digest[:]) {
		return fmt.Errorf("%q changed after the model was fingerprinted; run again", e.path)
	}
	// OpenFile's mode went through the umask; set it exactly.
	return os.Chmod(target, mode)
}
