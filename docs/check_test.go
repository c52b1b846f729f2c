package docs

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"gopkg.in/yaml.v3"

	"github.com/planets-mlops/deploy/internal/markdown"
)

// The docs check: what README.md, CONTRIBUTING.md, docs/ and model/README.md
// point at exists, every setting is in the generated reference, and the
// README stays short. It reads files only, so it runs in both tiers.
func TestDocs(t *testing.T) {
	for _, problem := range check(os.DirFS("..")) {
		t.Error(problem)
	}
}

// The check fails on what it is for: a broken link, a missing anchor, a
// path or hack/ command that does not exist, a key missing from the
// reference, a README over its budget.
func TestCheckFindsEachKindOfProblem(t *testing.T) {
	good := fstest.MapFS{
		"Pulumi.yaml":           {Data: []byte("name: mlops\nconfig:\n  region:\n    type: string\n    description: r\n")},
		"README.md":             {Data: []byte("# Title\n\nRun `hack/test.sh` and `sudo hack/local-deploy.sh`; see [setup](docs/gke.md#first-deploy) and [keys](docs/configuration.md).\n")},
		"CONTRIBUTING.md":       {Data: []byte("# Contributing\n\n[back](README.md#title)\n")},
		"docs/gke.md":           {Data: []byte("# GKE\n\n## First deploy\n\nSee [the title](#gke) and `model/Dockerfile`.\n\n```sh\nhack/test.sh --hermetic\n```\n")},
		"docs/configuration.md": {Data: []byte("# Configuration reference\n\n| `gcp:project` | | |\n| `mlops:region` | | |\n")},
		"hack/test.sh":          {Data: []byte("#!/bin/sh\n")},
		"hack/local-deploy.sh":  {Data: []byte("#!/bin/sh\n")},
		"model/Dockerfile":      {Data: []byte("FROM scratch\n")},
	}
	if problems := check(good); len(problems) > 0 {
		t.Fatalf("a consistent tree fails the check: %q", problems)
	}
	for _, tc := range []struct {
		name, file, text, want string
	}{
		{"a broken link", "docs/gke.md", "# GKE\n\n[gone](missing.md)\n", "docs/gke.md: link missing.md: docs/missing.md does not exist"},
		{"a missing anchor", "README.md", "# Title\n\n`hack/test.sh` `hack/local-deploy.sh` [setup](docs/gke.md#first-steps)\n", "README.md: link docs/gke.md#first-steps: docs/gke.md has no heading with the anchor first-steps"},
		{"a missing anchor in the same page", "docs/gke.md", "# GKE\n\n[here](#nowhere)\n", "docs/gke.md: link #nowhere: docs/gke.md has no heading with the anchor nowhere"},
		{"a path that does not exist", "docs/gke.md", "# GKE\n\nSee `model/Dockerfile.old`.\n", "docs/gke.md: names model/Dockerfile.old, which does not exist"},
		{"a hack/ command that does not exist", "docs/gke.md", "# GKE\n\n```sh\nhack/tests.sh\n```\n", "docs/gke.md: names hack/tests.sh, which does not exist"},
		{"a key missing from the reference", "docs/configuration.md", "# Configuration reference\n\n| `gcp:project` | | |\n", "docs/configuration.md lacks the key mlops:region of Pulumi.yaml"},
		{"gcp:project missing from the reference", "docs/configuration.md", "# Configuration reference\n\n| `mlops:region` | | |\n", "docs/configuration.md lacks the key gcp:project"},
		{"a README over its budget", "README.md", "# Title\n\n`hack/test.sh` `hack/local-deploy.sh`\n" + strings.Repeat("text\n", readmeBudget), fmt.Sprintf("README.md has %d lines; its budget is %d", readmeBudget+3, readmeBudget)},
		{"a README without the test command", "README.md", "# Title\n\n`hack/local-deploy.sh`\n", "README.md does not give the command hack/test.sh"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := fstest.MapFS{}
			for k, v := range good {
				bad[k] = v
			}
			bad[tc.file] = &fstest.MapFile{Data: []byte(tc.text)}
			problems := check(bad)
			if !slices.Contains(problems, tc.want) {
				t.Errorf("problems %q, want %q among them", problems, tc.want)
			}
		})
	}
}

// readmeBudget is how long README.md may grow: it is for the people who
// deploy models; everything else has a page under docs/.
const readmeBudget = 250

var (
	// [text](target), not an image's.
	mdLink  = regexp.MustCompile(`\]\(([^()\s]+)\)`)
	heading = regexp.MustCompile(`^#{1,6}\s+(.+?)\s*#*\s*$`)
	// A repository path: under one of the repository's top directories.
	repoPath = regexp.MustCompile(`(?:hack|model|internal|infra|cmd|test|pipelines|training|testdata|docs|\.github|\.ci)/[A-Za-z0-9_./-]*[A-Za-z0-9_]`)
	fence    = regexp.MustCompile("^\\s*(```|~~~)")
)

// check returns every problem of the docs in root, one line each.
func check(root fs.FS) []string {
	var problems []string
	pages := []string{"README.md", "CONTRIBUTING.md"}
	if more, err := fs.Glob(root, "docs/*.md"); err == nil {
		pages = append(pages, more...)
	}
	if _, err := fs.Stat(root, "model/README.md"); err == nil {
		pages = append(pages, "model/README.md")
	}
	anchors := map[string]map[string]bool{}
	anchorsOf := func(page string) (map[string]bool, error) {
		if a, ok := anchors[page]; ok {
			return a, nil
		}
		text, err := fs.ReadFile(root, page)
		if err != nil {
			return nil, err
		}
		a := map[string]bool{}
		seen := map[string]int{}
		for _, line := range prose(string(text)) {
			if m := heading.FindStringSubmatch(line); m != nil {
				id := markdown.Anchor(m[1])
				if n := seen[id]; n > 0 {
					a[fmt.Sprintf("%s-%d", id, n)] = true
				} else {
					a[id] = true
				}
				seen[id]++
			}
		}
		anchors[page] = a
		return a, nil
	}
	for _, page := range pages {
		data, err := fs.ReadFile(root, page)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", page, err))
			continue
		}
		text := string(data)
		for _, line := range prose(text) {
			for _, m := range mdLink.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				file, frag, _ := strings.Cut(target, "#")
				dest := page
				if file != "" {
					dest = path.Clean(path.Join(path.Dir(page), file))
					if _, err := fs.Stat(root, strings.TrimSuffix(dest, "/")); err != nil {
						problems = append(problems, fmt.Sprintf("%s: link %s: %s does not exist", page, target, dest))
						continue
					}
				}
				if frag == "" || !strings.HasSuffix(dest, ".md") {
					continue
				}
				if a, err := anchorsOf(dest); err != nil || !a[frag] {
					problems = append(problems, fmt.Sprintf("%s: link %s: %s has no heading with the anchor %s", page, target, dest, frag))
				}
			}
		}
		for _, loc := range repoPath.FindAllStringIndex(text, -1) {
			if loc[0] > 0 && strings.ContainsAny(text[loc[0]-1:loc[0]], "/.-_~$:@"+"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") {
				continue // part of a longer path, a URL or a name: not one of ours
			}
			p := strings.TrimRight(text[loc[0]:loc[1]], ".")
			// From the repository's root, or from the page's directory
			// (model/README.md names model/'s files as its module does).
			if _, err := fs.Stat(root, p); err != nil && !exists(root, path.Join(path.Dir(page), p)) {
				problems = append(problems, fmt.Sprintf("%s: names %s, which does not exist", page, p))
			}
		}
	}

	readme, _ := fs.ReadFile(root, "README.md")
	if n := strings.Count(string(readme), "\n"); n > readmeBudget {
		problems = append(problems, fmt.Sprintf("README.md has %d lines; its budget is %d", n, readmeBudget))
	}
	for _, command := range []string{"hack/test.sh", "hack/local-deploy.sh"} {
		if !strings.Contains(string(readme), command) {
			problems = append(problems, "README.md does not give the command "+command)
		}
	}

	keys, err := configKeys(root)
	if err != nil {
		return append(problems, err.Error())
	}
	reference, _ := fs.ReadFile(root, "docs/configuration.md")
	for _, k := range keys {
		if !strings.Contains(string(reference), "`"+k+"`") {
			problems = append(problems, fmt.Sprintf("docs/configuration.md lacks the key %s of Pulumi.yaml", k))
		}
	}
	if !strings.Contains(string(reference), "`gcp:project`") {
		problems = append(problems, "docs/configuration.md lacks the key gcp:project")
	}
	return problems
}

func exists(root fs.FS, name string) bool {
	_, err := fs.Stat(root, name)
	return err == nil
}

// configKeys are the keys of Pulumi.yaml's config block, namespaced.
func configKeys(root fs.FS) ([]string, error) {
	data, err := fs.ReadFile(root, "Pulumi.yaml")
	if err != nil {
		return nil, err
	}
	var project struct {
		Name   string
		Config yaml.Node
	}
	if err := yaml.Unmarshal(data, &project); err != nil {
		return nil, fmt.Errorf("Pulumi.yaml: %v", err)
	}
	var keys []string
	for i := 0; i+1 < len(project.Config.Content); i += 2 {
		k := project.Config.Content[i].Value
		if !strings.Contains(k, ":") {
			k = project.Name + ":" + k
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("Pulumi.yaml: no config keys")
	}
	return keys, nil
}

// prose is the lines of a Markdown text outside fenced code blocks, where
// links and headings mean something.
func prose(text string) []string {
	var lines []string
	in := false
	for _, line := range strings.Split(text, "\n") {
		if fence.MatchString(line) {
			in = !in
			continue
		}
		if !in {
			lines = append(lines, line)
		}
	}
	return lines
}
