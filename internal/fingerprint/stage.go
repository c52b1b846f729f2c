package fingerprint

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
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
//
// An external file (External) is copied from the directory when a file
// there has its MD5 and size, and fetched otherwise: only here, when the
// staged copy is not of this fingerprint, so an unchanged model is never
// fetched twice in one checkout.
func (c *BuildContext) Stage(dst string) error {
	_, err := c.stage(dst, true)
	return err
}

// StageWithoutFetching is Stage for a preview: it fetches nothing. When an
// external file is neither staged already nor in the directory, the rest
// is staged without it and complete is false: the staged copy is then not
// recorded as this fingerprint's, so the next Stage fetches the file and
// stages the context again. A preview builds nothing, so the context it
// leaves is only hashed, and differs from the built one exactly when the
// build would fetch.
func (c *BuildContext) StageWithoutFetching(dst string) (complete bool, err error) {
	return c.stage(dst, false)
}

// HasExternal tells whether a file of the context is known by its content
// address only (External).
func (c *BuildContext) HasExternal() bool {
	for _, e := range c.entries {
		if e.external != nil {
			return true
		}
	}
	return false
}

func (c *BuildContext) stage(dst string, fetch bool) (complete bool, err error) {
	marker := filepath.Clean(dst) + markerSuffix
	if isStaged(dst, marker, c.Fingerprint) {
		return true, nil
	}
	if err := os.RemoveAll(dst); err != nil {
		return false, fmt.Errorf("staging the build context: %w", err)
	}
	os.Remove(marker)
	complete = true
	for _, e := range c.entries {
		if e.external != nil {
			staged, err := stageExternal(c.Dir, dst, e.external, fetch)
			if err != nil {
				os.RemoveAll(dst)
				return false, fmt.Errorf("staging the build context: %w", err)
			}
			complete = complete && staged
			continue
		}
		if err := stageEntry(c.Dir, dst, e); err != nil {
			// Nothing half-staged stays behind for a build to pick up.
			os.RemoveAll(dst)
			return false, fmt.Errorf("staging the build context: %w", err)
		}
	}
	// Directories get one mode too, whatever the umask made of them.
	err = filepath.WalkDir(dst, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return os.Chmod(path, 0o755)
	})
	if err != nil {
		return false, fmt.Errorf("staging the build context: %w", err)
	}
	if !complete {
		return false, nil
	}
	if err := os.WriteFile(marker, []byte(c.Fingerprint), 0o644); err != nil {
		return false, fmt.Errorf("staging the build context: %w", err)
	}
	return true, nil
}

// stageExternal writes e into dst: from dir when the file there has e's
// MD5 and size (a checkout where dvc pull or dvc repro put it), else, when
// fetch is set, from e.Fetch. It reports whether e was staged.
func stageExternal(dir, dst string, e *External, fetch bool) (bool, error) {
	target := filepath.Join(dst, filepath.FromSlash(e.Path))
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return false, err
	}
	// A copy in the directory, or else in the cache, is used when it
	// verifies; checked as it is copied, so a file that changes meanwhile
	// (or a cache restored from elsewhere that holds other bytes) is not
	// staged.
	for _, candidate := range []string{filepath.Join(dir, filepath.FromSlash(e.Path)), e.Cache} {
		if candidate != "" && copyVerified(candidate, target, e.MD5, e.Size) {
			return true, nil
		}
	}
	if !fetch {
		return false, nil
	}
	out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return false, err
	}
	if err := e.Fetch(out); err != nil {
		out.Close()
		return false, err
	}
	if err := out.Close(); err != nil {
		return false, err
	}
	if err := os.Chmod(target, 0o644); err != nil {
		return false, err
	}
	if e.Cache != "" {
		if err := keepInCache(target, e.Cache); err != nil {
			return false, fmt.Errorf("keeping the fetched %s (md5 %s) in %s: %w", e.Path, e.MD5, e.Cache, err)
		}
	}
	return true, nil
}

// keepInCache copies the verified file src to cache, whole or not at all
// (a temporary file renamed), read-only as DVC keeps its cache entries.
func keepInCache(src, cache string) error {
	if err := os.MkdirAll(filepath.Dir(cache), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(cache), filepath.Base(cache)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o444); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), cache)
}

// copyVerified copies src to dst when src is a regular file of the given
// MD5 and size, and tells whether it did; dst is removed when not.
func copyVerified(src, dst, wantMD5 string, size int64) bool {
	in, err := os.Open(src)
	if err != nil {
		return false
	}
	defer in.Close()
	if info, err := in.Stat(); err != nil || !info.Mode().IsRegular() || info.Size() != size {
		return false
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return false
	}
	h := md5.New()
	n, err := io.Copy(io.MultiWriter(out, h), in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil || n != size || hex.EncodeToString(h.Sum(nil)) != wantMD5 || os.Chmod(dst, 0o644) != nil {
		os.Remove(dst)
		return false
	}
	return true
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
