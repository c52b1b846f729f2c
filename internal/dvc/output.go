// Package dvc reads what DVC records about a tracked file (a `.dvc` file or
// an entry of `dvc.lock`) and the remotes of `.dvc/config`, and fetches the
// file's object from a remote, verified, without DVC itself.
//
// Only the formats are implemented here, from DVC's public documentation
// and source (cited where each rule is used); no DVC code is copied:
//
//   - `.dvc` files and `dvc.lock`: dvc.org, "dvc.yaml/.dvc files" and
//     "dvc.lock file" (user-guide/project-structure), and DVC's
//     dvc/output.py (an output's keys: path, md5, size, nfiles, hash) and
//     dvc/schema.py (the lock file's `schema: '2.0'` and its stages).
//   - the remote's layout: dvc/cachemgr.py and dvc/data_cloud.py. DVC 3
//     keeps objects under `files/md5/` of the remote (the prefix
//     (FILES_DIR, DEFAULT_ALGORITHM)); an output without `hash: md5` is a
//     DVC 2 one, hashed "md5-dos2unix" (LEGACY_HASH_NAMES) and kept at the
//     remote's root. Either way an object's path is the first two hex digits
//     of its MD5, a slash, and the other thirty (dvc-objects' oid_to_path).
//   - `.dvc/config`: dvc/config.py (configobj, an INI dialect: `[core]`
//     remote, `['remote "name"']` url; a relative local path is relative to
//     the config file's directory).
package dvc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Layout says where a remote keeps an output's object.
type Layout string

const (
	// LayoutDVC3 is DVC 3's: <remote>/files/md5/<2 hex>/<30 hex>, for an
	// output recorded with `hash: md5`.
	LayoutDVC3 Layout = "dvc3"
	// LayoutDVC2 is DVC 2's: <remote>/<2 hex>/<30 hex>, for an output
	// recorded without `hash` (DVC 3 still reads and writes these as
	// "legacy" objects).
	LayoutDVC2 Layout = "dvc2"
)

// Output is one file DVC tracks: its content address and where it lands.
type Output struct {
	// Path is where DVC puts the file, relative to the directory of the
	// file that records it (the `.dvc` file's or dvc.lock's), slash-separated,
	// as DVC writes it.
	Path string
	// MD5 is the file's MD5 as DVC recorded it, 32 lowercase hex digits.
	MD5 string
	// Size is the file's size in bytes.
	Size int64
	// Layout is the remote layout of its object, from the hash DVC named.
	Layout Layout
	// RecordedIn is the `.dvc` file or dvc.lock (with the stage) that
	// records it, for messages.
	RecordedIn string
}

// ObjectKey is the object's path inside a remote: files/md5/ab/cdef... for
// DVC 3, ab/cdef... for DVC 2.
func (o Output) ObjectKey() string {
	key := o.MD5[:2] + "/" + o.MD5[2:]
	if o.Layout == LayoutDVC3 {
		return "files/md5/" + key
	}
	return key
}

// rawOut is an output entry as both formats write it. DVC 3:
//
//   - md5: 3863d0e317dee0a55c4e59d2ec0eef33
//     size: 824489
//     hash: md5
//     path: planets.onnx
//
// DVC 2 writes the same without `hash`. A directory's md5 ends in ".dir"
// and it has `nfiles`; a cloud-versioned output has `files` instead of md5.
type rawOut struct {
	Path   string `yaml:"path"`
	MD5    string `yaml:"md5"`
	Size   *int64 `yaml:"size"`
	Hash   string `yaml:"hash"`
	NFiles *int   `yaml:"nfiles"`
	Files  any    `yaml:"files"`
}

var md5Pattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// output checks one raw entry and returns it as an Output.
func (r rawOut) output(recordedIn string) (Output, error) {
	where := fmt.Sprintf("%s: output %q", recordedIn, r.Path)
	switch {
	case r.Path == "":
		return Output{}, fmt.Errorf("%s: an output has no path", recordedIn)
	case strings.HasSuffix(r.MD5, ".dir") || r.NFiles != nil:
		return Output{}, fmt.Errorf("%s is a directory (md5 %s); the model must be a single-file output: make the stage write the ONNX file itself as its own output (outs: - %s/<model>.onnx) and run dvc repro, or dvc add the file alone", where, r.MD5, strings.TrimSuffix(r.Path, "/"))
	case r.Files != nil && r.MD5 == "":
		return Output{}, fmt.Errorf("%s is tracked by cloud version ids (files:), not by MD5; expected a plain output pushed to a remote with dvc push", where)
	case !md5Pattern.MatchString(r.MD5):
		return Output{}, fmt.Errorf("%s: md5 %q; expected 32 lowercase hex digits (is the output committed with dvc commit?)", where, r.MD5)
	case r.Size == nil || *r.Size < 0:
		return Output{}, fmt.Errorf("%s: no size; expected DVC 2 or 3's `size:` beside `md5:` (written by dvc add, dvc commit or dvc repro)", where)
	}
	o := Output{Path: path.Clean(r.Path), MD5: r.MD5, Size: *r.Size, RecordedIn: recordedIn}
	switch r.Hash {
	case "md5":
		o.Layout = LayoutDVC3
	case "":
		o.Layout = LayoutDVC2
	default:
		return Output{}, fmt.Errorf("%s: hash %q; expected md5 (DVC 3) or none (DVC 2)", where, r.Hash)
	}
	return o, nil
}

// ReadDVCFile reads a `.dvc` file and returns its one output.
func ReadDVCFile(file string) (Output, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return Output{}, err
	}
	var doc struct {
		Outs []rawOut `yaml:"outs"`
	}
	if err := decodeYAML(raw, &doc); err != nil {
		return Output{}, fmt.Errorf("%s does not parse as a .dvc file: %w", file, err)
	}
	if len(doc.Outs) != 1 {
		return Output{}, fmt.Errorf("%s has %d outputs; expected a .dvc file with the one model file in outs (as dvc add writes it)", file, len(doc.Outs))
	}
	return doc.Outs[0].output(file)
}

// ReadLock reads dvc.lock and returns the output of any stage whose path,
// relative to the lock file's directory, is want (slash-separated).
func ReadLock(file, want string) (Output, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return Output{}, err
	}
	var doc struct {
		Schema string `yaml:"schema"`
		Stages map[string]struct {
			Outs []rawOut `yaml:"outs"`
		} `yaml:"stages"`
	}
	if err := decodeYAML(raw, &doc); err != nil {
		return Output{}, fmt.Errorf("%s does not parse as dvc.lock: %w", file, err)
	}
	if doc.Schema != "2.0" {
		return Output{}, fmt.Errorf("%s: schema %q; expected a dvc.lock of schema '2.0' (DVC 2 and 3; an older lock file is rewritten by dvc repro with a current DVC)", file, doc.Schema)
	}
	want = path.Clean(want)
	var found []Output
	var seen []string
	for name, stage := range doc.Stages {
		for _, out := range stage.Outs {
			seen = append(seen, out.Path)
			if path.Clean(out.Path) != want {
				continue
			}
			o, err := out.output(fmt.Sprintf("%s (stage %s)", file, name))
			if err != nil {
				return Output{}, err
			}
			found = append(found, o)
		}
	}
	switch len(found) {
	case 0:
		for _, p := range seen {
			if strings.HasPrefix(want, path.Clean(p)+"/") {
				return Output{}, fmt.Errorf("%s: %s is inside the directory output %s; the model must be a single-file output: make the stage list %s itself in its outs and run dvc repro", file, want, p, want)
			}
		}
		return Output{}, fmt.Errorf("%s has no output %s (outputs: %s); expected the stage that writes the model to list it in its outs in dvc.yaml and dvc repro to have recorded it", file, want, strings.Join(seen, ", "))
	case 1:
		return found[0], nil
	}
	return Output{}, fmt.Errorf("%s records %s in %d stages; expected one", file, want, len(found))
}

// decodeYAML decodes one YAML document, refusing an empty file.
func decodeYAML(raw []byte, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return errors.New("the file is empty")
	}
	return yaml.Unmarshal(raw, v)
}

// IsLockFile tells whether file is a dvc.lock (else a `.dvc` file).
func IsLockFile(file string) bool { return filepath.Base(file) == "dvc.lock" }
