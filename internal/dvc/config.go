package dvc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Remote is a DVC remote from .dvc/config: a Cloud Storage bucket (and a
// prefix in it) or a local directory.
type Remote struct {
	// Name is the remote's name in .dvc/config.
	Name string
	// URL is the url as written in .dvc/config.
	URL string
	// Bucket and Prefix are a gs:// remote's bucket and the path in it
	// ("" at the bucket's root); empty for a local remote.
	Bucket, Prefix string
	// Dir is a local remote's directory, resolved; empty for gs://.
	Dir string
}

// IsGCS tells whether the remote is a Cloud Storage bucket.
func (r Remote) IsGCS() bool { return r.Bucket != "" }

// ObjectURL is where the remote keeps o's object, for messages: a gs://
// URL or a local path.
func (r Remote) ObjectURL(o Output) string {
	if r.IsGCS() {
		return "gs://" + r.Bucket + "/" + r.objectName(o)
	}
	return filepath.Join(r.Dir, filepath.FromSlash(o.ObjectKey()))
}

// objectName is o's object name inside the bucket.
func (r Remote) objectName(o Output) string {
	if r.Prefix == "" {
		return o.ObjectKey()
	}
	return r.Prefix + "/" + o.ObjectKey()
}

// Cloud Storage's bucket naming rules (cloud.google.com/storage/docs/
// buckets#naming): 3-63 lowercase letters, digits, hyphens, underscores and
// dots, starting and ending with a letter or digit (dotted names up to 222
// characters, 63 per dot-separated part).
var (
	bucketPattern     = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$`)
	bucketPartPattern = regexp.MustCompile(`^[a-z0-9_-]{1,63}$`)
)

// ValidBucket tells whether name is a valid Cloud Storage bucket name.
func ValidBucket(name string) bool {
	if !bucketPattern.MatchString(name) || (!strings.Contains(name, ".") && len(name) > 63) || strings.HasPrefix(name, "goog") {
		return false
	}
	for _, part := range strings.Split(name, ".") {
		if !bucketPartPattern.MatchString(part) {
			return false
		}
	}
	return true
}

// RemoteNamePattern is what this program accepts as a remote's name:
// `dvc remote add` takes any name, but one with quotes, brackets or
// spaces would not survive the section header `['remote "name"']`.
var RemoteNamePattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

// FindRepo returns the DVC repository holding path: the nearest directory
// at or above path's directory that has .dvc/config.
func FindRepo(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, ".dvc", "config")); err == nil {
			return dir, nil
		}
		if parent := filepath.Dir(dir); parent == dir {
			return "", fmt.Errorf("%s is in no DVC repository: no .dvc/config in its directory or above (dvc init, then dvc remote add -d <name> gs://<bucket>/<path>)", path)
		}
	}
}

// ReadRemote reads the remote called name from repo/.dvc/config, or the
// default one (`[core] remote`) when name is "".
func ReadRemote(repo, name string) (Remote, error) {
	file := filepath.Join(repo, ".dvc", "config")
	raw, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return Remote{}, fmt.Errorf("%s does not exist; expected the DVC repository's config with its remote", file)
	}
	if err != nil {
		return Remote{}, err
	}
	sections, err := parseINI(raw)
	if err != nil {
		return Remote{}, fmt.Errorf("%s does not parse: %w", file, err)
	}
	if name == "" {
		if name = sections["core"]["remote"]; name == "" {
			return Remote{}, fmt.Errorf("%s names no default remote ([core] remote); set one with dvc remote default <name>, or name it in mlops:modelDvcRemote", file)
		}
	}
	section, ok := sections[`remote "`+name+`"`]
	if !ok {
		return Remote{}, fmt.Errorf("%s has no remote %q (remotes: %s); expected a section ['remote \"%s\"'] with its url, as dvc remote add writes it", file, name, strings.Join(remoteNames(sections), ", "), name)
	}
	r := Remote{Name: name, URL: section["url"]}
	switch {
	case r.URL == "":
		return Remote{}, fmt.Errorf("%s: remote %q has no url", file, name)
	case strings.HasPrefix(r.URL, "gs://"):
		bucket, prefix, _ := strings.Cut(strings.TrimPrefix(r.URL, "gs://"), "/")
		if !ValidBucket(bucket) {
			return Remote{}, fmt.Errorf("%s: remote %q url %s: %q is not a Cloud Storage bucket name (3-63 lowercase letters, digits, hyphens, underscores and dots, starting and ending with a letter or digit)", file, name, r.URL, bucket)
		}
		r.Bucket, r.Prefix = bucket, strings.Trim(prefix, "/")
	case strings.Contains(r.URL, "://") || strings.HasPrefix(r.URL, "remote:"):
		return Remote{}, fmt.Errorf("%s: remote %q url %s; expected gs://<bucket>/<path> or a local directory", file, name, r.URL)
	default:
		// A relative local path is relative to the config file's directory
		// (dvc/config.py resolves a local remote's url against its file's
		// directory), so a repository's `url = ../storage` is beside it.
		r.Dir = r.URL
		if !filepath.IsAbs(r.Dir) {
			r.Dir = filepath.Join(filepath.Dir(file), r.Dir)
		}
	}
	return r, nil
}

func remoteNames(sections map[string]map[string]string) []string {
	var names []string
	for s := range sections {
		if n, ok := strings.CutPrefix(s, `remote "`); ok {
			names = append(names, strings.TrimSuffix(n, `"`))
		}
	}
	if len(names) == 0 {
		return []string{"none"}
	}
	return names
}

// parseINI reads configobj's dialect as DVC writes it: `[section]` and
// `['remote "name"']` headers (configobj quotes a header holding quotes),
// `key = value` lines with optionally quoted values, `#` and `;` comments.
func parseINI(raw []byte) (map[string]map[string]string, error) {
	sections := map[string]map[string]string{}
	var current map[string]string
	scanner := bufio.NewScanner(bytes.NewReader(raw))
	for n := 1; scanner.Scan(); n++ {
		line := strings.TrimSpace(scanner.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") {
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("line %d: %q: a section header without its closing ]", n, line)
			}
			name := unquote(strings.TrimSpace(line[1 : len(line)-1]))
			current = map[string]string{}
			sections[name] = current
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: %q; expected key = value", n, line)
		}
		if current == nil {
			return nil, fmt.Errorf("line %d: %q comes before any [section]", n, line)
		}
		current[strings.TrimSpace(key)] = unquote(strings.TrimSpace(value))
	}
	return sections, scanner.Err()
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '\'' || s[0] == '"') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}
