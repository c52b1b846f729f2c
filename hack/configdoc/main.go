// Command configdoc writes docs/configuration.md, the configuration
// reference, from Pulumi.yaml: every key of its config block with its type,
// default and description, in the file's order and under its section
// comments, and the keys `pulumi new` asks for (its template block, which
// also describes gcp:project, a key of the gcp provider that the config
// block may not describe). Pulumi.yaml is the one source: edit it, then run
//
//	go run ./hack/configdoc
//
// from the repository's root. Its test fails when the two disagree.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

const (
	source = "Pulumi.yaml"
	target = "docs/configuration.md"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "configdoc:", err)
		os.Exit(1)
	}
}

func run() error {
	project, err := os.ReadFile(source)
	if err != nil {
		return fmt.Errorf("%v (run it from the repository's root)", err)
	}
	doc, err := Render(project)
	if err != nil {
		return err
	}
	return os.WriteFile(target, doc, 0o644)
}

// key is one setting as Pulumi.yaml declares it.
type key struct {
	name, typ, def, description string
	hasDefault                  bool
}

// section is a run of keys under one "# --- title ---" comment.
type section struct {
	title string
	keys  []key
}

var sectionComment = regexp.MustCompile(`(?m)^#\s*---\s*(.+?)\s*-*\s*$`)

// Render is docs/configuration.md for the Pulumi.yaml given.
func Render(project []byte) ([]byte, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(project, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	if len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: not a mapping", source)
	}
	top := root.Content[0]
	name := scalar(lookup(top, "name"))
	config := lookup(top, "config")
	if name == "" || config == nil || config.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: no name or no config block", source)
	}
	sections := []section{{title: "General"}}
	for i := 0; i+1 < len(config.Content); i += 2 {
		k, v := config.Content[i], config.Content[i+1]
		if m := sectionComment.FindStringSubmatch(k.HeadComment); m != nil {
			sections = append(sections, section{title: m[1]})
		}
		decl := key{
			name:        k.Value,
			typ:         scalar(lookup(v, "type")),
			description: oneLine(scalar(lookup(v, "description"))),
		}
		if d := lookup(v, "default"); d != nil {
			decl.def, decl.hasDefault = d.Value, true
		}
		if decl.description == "" {
			return nil, fmt.Errorf("%s: config key %s has no description", source, k.Value)
		}
		if !strings.Contains(decl.name, ":") {
			decl.name = name + ":" + decl.name
		}
		last := &sections[len(sections)-1]
		last.keys = append(last.keys, decl)
	}

	var asked []key
	if tmpl := lookup(lookup(top, "template"), "config"); tmpl != nil {
		for i := 0; i+1 < len(tmpl.Content); i += 2 {
			k, v := tmpl.Content[i], tmpl.Content[i+1]
			a := key{name: k.Value, description: oneLine(scalar(lookup(v, "description")))}
			if d := lookup(v, "default"); d != nil {
				a.def, a.hasDefault = d.Value, true
			}
			asked = append(asked, a)
		}
	}
	if len(asked) == 0 {
		return nil, errors.New(source + ": no template config block (the keys `pulumi new` asks for)")
	}

	var b bytes.Buffer
	b.WriteString("# Configuration reference\n\n")
	b.WriteString("<!-- Generated from Pulumi.yaml by `go run ./hack/configdoc`: edit Pulumi.yaml, then run it. Its test fails when the two disagree. -->\n\n")
	b.WriteString("Every setting of a stack. Set one with `pulumi config set <key> <value>`\n")
	b.WriteString("(secrets with `--secret`); `pulumi config` lists a stack's. The program\n")
	b.WriteString("checks them all in `internal/config` before anything is created or changed,\n")
	b.WriteString("and names every bad value at once with what it expects.\n\n")
	b.WriteString("## What `pulumi new` asks\n\n")
	b.WriteString("`pulumi new` from this repository asks for these (`--config key=value` answers\n")
	b.WriteString("ahead); every other key keeps its default.\n\n")
	b.WriteString("| key | default | what |\n| --- | --- | --- |\n")
	for _, a := range asked {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", a.name, defaultCell(a), cell(a.description))
	}
	for _, s := range sections {
		if len(s.keys) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n## %s\n\n", s.title)
		b.WriteString("| key | type | default | what |\n| --- | --- | --- | --- |\n")
		for _, k := range s.keys {
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", k.name, k.typ, defaultCell(k), cell(k.description))
		}
	}
	return b.Bytes(), nil
}

// lookup is the value of key in a mapping node, or nil.
func lookup(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func scalar(n *yaml.Node) string {
	if n == nil {
		return ""
	}
	return n.Value
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// cell escapes what would end a table cell, and, outside code spans, the
// angle brackets Markdown would take for an HTML tag (<owner>, <project>).
func cell(s string) string {
	parts := strings.Split(strings.ReplaceAll(s, "|", `\|`), "`")
	for i := 0; i < len(parts); i += 2 {
		parts[i] = strings.NewReplacer("<", "&lt;", ">", "&gt;").Replace(parts[i])
	}
	return strings.Join(parts, "`")
}

func defaultCell(k key) string {
	switch {
	case !k.hasDefault:
		return "(none)"
	case k.def == "":
		return `""`
	}
	return "`" + cell(k.def) + "`"
}
