// Package fingerprint computes the model fingerprint: one SHA-256 that changes
// exactly when what goes into the model image changes.
//
// It covers the files of a Docker build context that `.dockerignore` does not
// exclude (their slash-separated relative paths, their contents and whether
// they are executable), the target platform and the build arguments. It
// deliberately ignores everything a fresh checkout on another machine changes
// without changing the image: mtimes, owners, umask-dependent permission bits
// and the absolute path of the checkout. The whole deployment keys on it: the
// image tag, the pod template annotation, and so whether anything rolls out.
package fingerprint

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"golang.org/x/sync/errgroup"
)

// formatVersion is hashed first, so that a change in what the fingerprint
// covers changes every fingerprint rather than silently colliding with old ones.
const formatVersion = "mlops-model-fingerprint/v1"

// Inputs are the parts of an image build, besides its context, that change the image.
type Inputs struct {
	// Platform is the build platform, such as "linux/amd64".
	Platform string
	// BuildArgs are the Docker build arguments.
	BuildArgs map[string]string
}

// External is a file of the build context whose bytes are not read to
// fingerprint it: a content address stands for them (the MD5 and size DVC
// recorded for the model), and they are fetched only to stage a context
// that must be built. So a preview, and an `up` that changes nothing,
// never download the model.
type External struct {
	// Path is the file's slash-separated path in the context, such as
	// artifacts/planets.onnx. A file at that path in the directory is a
	// copy the stage may use, when it has the same MD5 and size.
	Path string
	// MD5 and Size are the file's content address.
	MD5  string
	Size int64
	// Fetch writes the file's bytes to w, verified against MD5 and Size,
	// or returns an error saying where they were looked for.
	Fetch func(w io.Writer) error
	// Cache, when set, is a file that may hold a copy (DVC's local cache
	// entry for MD5: what `dvc pull` leaves, and what CI restores from its
	// cache into a fresh checkout). The stage uses it when it has MD5 and
	// Size, and writes a fetched copy there, so a checkout whose cache
	// is kept (actions/cache, GitLab's cache) stages the same context
	// without fetching, in a preview too.
	Cache string
}

// entry is one file of the build context, as the fingerprint sees it.
type entry struct {
	path       string // slash-separated, relative to the context root
	executable bool
	symlink    string // the link target, for symlinks
	digest     [sha256.Size]byte
	external   *External // its bytes are known by content address only
}

// BuildContext is a build context read once: the files the fingerprint covers,
// each with its digest, and the fingerprint itself. A deployment reads its
// model once, before it declares anything, and stages the image's build
// context from what it read (Stage), so the tag, the pod annotation and the
// staged files all come from the same single pass over the model.
type BuildContext struct {
	// Dir is the build context's directory.
	Dir string
	// Inputs are the build's other inputs, part of the fingerprint.
	Inputs Inputs
	// Fingerprint is the hex SHA-256 of the files and the inputs.
	Fingerprint string

	entries []*entry
}

// Read lists and hashes the build context in dir (files in parallel) and
// computes its fingerprint together with inputs. Each external file takes
// the place of any file at its path in dir and enters the fingerprint by
// its content address, unread.
func Read(ctx context.Context, dir string, inputs Inputs, externals ...External) (*BuildContext, error) {
	entries, err := listContext(dir, externals)
	if err != nil {
		return nil, err
	}
	if err := hashFiles(ctx, dir, entries); err != nil {
		return nil, err
	}
	return &BuildContext{Dir: dir, Inputs: inputs, Fingerprint: combine(entries, inputs), entries: entries}, nil
}

// Compute returns the hex SHA-256 fingerprint of the build context in dir
// together with inputs.
func Compute(ctx context.Context, dir string, inputs Inputs) (string, error) {
	c, err := Read(ctx, dir, inputs)
	if err != nil {
		return "", err
	}
	return c.Fingerprint, nil
}

// listContext walks dir and returns the entries that .dockerignore keeps, sorted by path.
func listContext(dir string, externals []External) ([]*entry, error) {
	info, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("model build context %q does not exist; expected a directory with a Dockerfile and the model", dir)
	case err != nil:
		return nil, fmt.Errorf("model build context %q: %w", dir, err)
	case !info.IsDir():
		return nil, fmt.Errorf("model build context %q is not a directory; expected a directory with a Dockerfile and the model", dir)
	}

	ignored, err := readDockerignore(dir)
	if err != nil {
		return nil, err
	}
	external := map[string]*External{}
	for i := range externals {
		e := &externals[i]
		excluded, err := ignored.MatchesOrParentMatches(e.Path)
		if err != nil {
			return nil, fmt.Errorf("model build context: matching %q against .dockerignore: %w", e.Path, err)
		}
		if excluded {
			return nil, fmt.Errorf("model build context %q: .dockerignore excludes %s, the file DVC provides; expected it to be built into the image", dir, e.Path)
		}
		external[e.Path] = e
	}

	var entries []*entry
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, walkErr error) error {
		if walkErr != nil {
			return fmt.Errorf("model build context: cannot read %q: %w", path, walkErr)
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		excluded, err := ignored.MatchesOrParentMatches(rel)
		if err != nil {
			return fmt.Errorf("model build context: matching %q against .dockerignore: %w", rel, err)
		}
		if d.IsDir() {
			// A directory is only skipped whole when no "!" exception could
			// bring back something below it, as Docker itself does.
			if excluded && !ignored.Exclusions() {
				return filepath.SkipDir
			}
			return nil
		}
		if excluded || external[rel] != nil {
			return nil
		}
		switch mode := d.Type(); {
		case mode.IsRegular():
			info, err := d.Info()
			if err != nil {
				return fmt.Errorf("model build context: cannot stat %q: %w", path, err)
			}
			entries = append(entries, &entry{path: rel, executable: info.Mode().Perm()&0o111 != 0})
		case mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return fmt.Errorf("model build context: cannot read link %q: %w", path, err)
			}
			entries = append(entries, &entry{path: rel, symlink: filepath.ToSlash(target)})
		default:
			return fmt.Errorf("model build context: %q is a %s; expected only regular files, directories and symlinks", rel, mode.Type())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, e := range external {
		entries = append(entries, &entry{path: e.Path, external: e})
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("model build context %q has no files (after .dockerignore); expected a Dockerfile and the model", dir)
	}
	// WalkDir visits in lexical order of OS names; sort by the slash path so
	// the order is the same on every OS.
	sort.Slice(entries, func(i, j int) bool { return entries[i].path < entries[j].path })
	return entries, nil
}

// readDockerignore parses dir/.dockerignore with Docker's own pattern rules.
func readDockerignore(dir string) (*patternmatcher.PatternMatcher, error) {
	f, err := os.Open(filepath.Join(dir, ".dockerignore"))
	if errors.Is(err, fs.ErrNotExist) {
		return patternmatcher.New(nil)
	}
	if err != nil {
		return nil, fmt.Errorf("model build context: %w", err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("model build context: reading %s: %w", f.Name(), err)
	}
	matcher, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, fmt.Errorf("model build context: bad pattern in %s: %w", f.Name(), err)
	}
	return matcher, nil
}

// hashFiles fills in the digest of every regular file, one worker per CPU.
func hashFiles(ctx context.Context, dir string, entries []*entry) error {
	group, ctx := errgroup.WithContext(ctx)
	group.SetLimit(runtime.GOMAXPROCS(0))
	for _, e := range entries {
		if e.symlink != "" || e.external != nil {
			continue
		}
		group.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			digest, err := hashFile(filepath.Join(dir, filepath.FromSlash(e.path)))
			if err != nil {
				return fmt.Errorf("model build context: cannot read %q: %w", e.path, err)
			}
			e.digest = digest
			return nil
		})
	}
	return group.Wait()
}

func hashFile(path string) ([sha256.Size]byte, error) {
	var digest [sha256.Size]byte
	f, err := os.Open(path)
	if err != nil {
		return digest, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return digest, err
	}
	h.Sum(digest[:0])
	return digest, nil
}

// combine hashes the sorted entries and the inputs into the fingerprint.
// Every field is written with an unambiguous separator (NUL cannot occur in
// paths or in the other fields), so no two different contexts share a stream.
func combine(entries []*entry, inputs Inputs) string {
	h := sha256.New()
	w := bufio.NewWriter(h)
	fmt.Fprintf(w, "%s\x00platform\x00%s\x00", formatVersion, inputs.Platform)
	for _, name := range slices.Sorted(maps.Keys(inputs.BuildArgs)) {
		fmt.Fprintf(w, "arg\x00%s\x00%s\x00", name, inputs.BuildArgs[name])
	}
	for _, e := range entries {
		switch {
		case e.external != nil:
			// The content address in place of the bytes' SHA-256: the
			// model as a DVC output and as a Git file of the same bytes
			// give different fingerprints, since one cannot be computed
			// from the other without the bytes.
			fmt.Fprintf(w, "md5\x00%s\x00%s\x00%d\x00", e.path, e.external.MD5, e.external.Size)
		case e.symlink != "":
			fmt.Fprintf(w, "link\x00%s\x00%s\x00", e.path, e.symlink)
		case e.executable:
			fmt.Fprintf(w, "exec\x00%s\x00%x\x00", e.path, e.digest)
		default:
			fmt.Fprintf(w, "file\x00%s\x00%x\x00", e.path, e.digest)
		}
	}
	w.Flush()
	return hex.EncodeToString(h.Sum(nil))
}
