package pipelines

// The installer's table (hack/deps.sh) against what the repository really
// calls: every command a script or a Go file runs, and every Python module a
// script that a test runs imports, must either be on every Debian or Ubuntu
// machine (baseCommands) or be installed by hack/deps.sh for the group that
// uses it. This catches a missing install step before a fresh machine does:
// the dataset parity test's inputs.py importing torch (through planets.py)
// while .ci/run installed only Pillow and numpy was such a case.

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// baseCommands are on every machine the scripts run on (Debian's and
// Ubuntu's base systems, a hosted runner) or are the prerequisites the
// README names (Go, git), or are used only where present.
var baseCommands = map[string]string{}

func init() {
	for why, names := range map[string]string{
		"bash builtins and keywords": "alias bash sh pwd break builtin case cd command continue declare do done echo elif else esac eval exec exit export false fi for function getopts hash if in local mapfile printf pushd popd read readarray readonly return select set shift shopt source test then time trap true type ulimit umask unset until wait while",
		"coreutils":                  "basename cat chmod chown chroot cp cut date dd df dirname du env expr head id install ln ls mkdir mktemp mv nohup nproc numfmt od readlink realpath rm rmdir seq sha256sum sleep sort stat stdbuf sync tac tail tee timeout touch tr truncate uname uniq wc yes",
		"base utilities":             "useradd userdel awk cmp diff find flock getconf grep gzip hostname kill mount ps pgrep pkill sed setpriv setsid tar umount xargs",
		"prerequisites (README)":     "go gofmt git",
		"used only where present":    "sudo apt-get apt-config dpkg dpkg-query",
		"the hosted runner's (the pipelines' own scripts; their tests use stand-ins)": "gh gcloud gke-gcloud-auth-plugin",
	} {
		for _, name := range strings.Fields(names) {
			baseCommands[name] = why
		}
	}
}

// installerTable reads `hack/deps.sh --list`: for each group, the probes it
// satisfies (cmd:NAME, file:PATH, py:MODULE).
func installerTable(t *testing.T) map[string]map[string]bool {
	t.Helper()
	out, err := exec.Command("bash", repoPath(t, "hack/deps.sh"), "--list").Output()
	if err != nil {
		t.Fatalf("hack/deps.sh --list: %v", err)
	}
	table := map[string]map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Split(line, "\t")
		if len(fields) != 4 {
			t.Fatalf("hack/deps.sh --list: %q: want group(s), package, probe, why", line)
		}
		for _, group := range strings.Split(fields[0], ",") {
			if table[group] == nil {
				table[group] = map[string]bool{}
			}
			for _, probe := range strings.Fields(fields[2]) {
				table[group][probe] = true
				if strings.HasPrefix(probe, "file:") { // a file probe covers the command of that name
					table[group]["cmd:"+filepath.Base(probe)] = true
				}
			}
		}
	}
	return table
}

// use is one thing the repository needs from the machine.
type use struct {
	group, probe, where string
}

// groupOf says which installer group a script belongs to: the command that
// runs it.
func groupOf(rel string) string {
	switch {
	case rel == "hack/local-deploy.sh":
		return "deploy"
	case rel == "model/hack/bench.sh" || rel == "model/hack/profile.sh" || strings.HasPrefix(rel, "model/hack/") && strings.HasSuffix(rel, ".py"):
		return "bench"
	case strings.HasPrefix(rel, "training/"):
		return "training"
	}
	return "full" // the tests, .ci/run and the scripts they call
}

func TestInstallerCoversEveryTool(t *testing.T) {
	table := installerTable(t)
	files := trackedFiles(t)
	var uses []use
	pyRunByTests := map[string]bool{}
	for _, rel := range files {
		data, err := os.ReadFile(repoPath(t, rel))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasSuffix(rel, ".go"):
			for _, name := range goExecs(string(data)) {
				uses = append(uses, use{"full", commandProbe(name), rel})
			}
			if strings.HasSuffix(rel, "_test.go") {
				for _, m := range pyLiteral.FindAllStringSubmatch(string(data), -1) {
					pyRunByTests[m[1]] = true
				}
			}
		case strings.HasSuffix(rel, ".sh") || rel == ".ci/run":
			for _, name := range shellCommands(string(data)) {
				uses = append(uses, use{groupOf(rel), "cmd:" + name, rel})
			}
		}
	}
	for _, rel := range files {
		if !strings.HasSuffix(rel, ".py") {
			continue
		}
		group := groupOf(rel)
		if pyRunByTests[filepath.Base(rel)] {
			group = "full"
		}
		for _, module := range pythonImports(t, rel, map[string]bool{}) {
			uses = append(uses, use{group, "py:" + module, rel})
		}
	}
	if len(uses) < 20 {
		t.Fatalf("found only %d uses of tools in the repository: the scanner is broken", len(uses))
	}

	stdlib := pythonStdlib(t)
	missing := map[string][]string{}
	for _, u := range uses {
		name := strings.TrimPrefix(u.probe, "cmd:")
		switch {
		case u.probe == "cmd:python3" || u.probe == "file:/usr/bin/python3":
			// Debian's python3 comes with any python3-* package of the group.
			if !hasPython(table[u.group]) {
				missing[u.group+" "+u.probe] = append(missing[u.group+" "+u.probe], u.where)
			}
			continue
		case strings.HasPrefix(u.probe, "cmd:") && baseCommands[name] != "":
			continue
		case strings.HasPrefix(u.probe, "py:") && stdlib[strings.TrimPrefix(u.probe, "py:")]:
			continue
		}
		if !table[u.group][u.probe] {
			missing[u.group+" "+u.probe] = append(missing[u.group+" "+u.probe], u.where)
		}
	}
	keys := make([]string, 0, len(missing))
	for k := range missing {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		group, probe, _ := strings.Cut(k, " ")
		where := slices.Compact(missing[k])
		t.Errorf("%s uses %s, which hack/deps.sh does not install for the group %q: add its Debian package to the table (or, if every base system has it, to baseCommands)", strings.Join(where, ", "), probe, group)
	}
}

func hasPython(probes map[string]bool) bool {
	for p := range probes {
		if strings.HasPrefix(p, "py:") {
			return true
		}
	}
	return false
}

func trackedFiles(t *testing.T) []string {
	t.Helper()
	cmd := exec.Command("git", "ls-files")
	cmd.Dir = repoPath(t, ".")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	return strings.Fields(string(out))
}

var (
	// exec.Command, exec.CommandContext and exec.LookPath with a literal name
	goExec    = regexp.MustCompile(`exec\.(?:Command|LookPath)\(\s*"([^"]+)"|exec\.CommandContext\(\s*[A-Za-z_][A-Za-z0-9_.()]*,\s*"([^"]+)"`)
	pyLiteral = regexp.MustCompile(`"([A-Za-z0-9_]+\.py)"`)
)

func goExecs(src string) []string {
	var names []string
	for _, m := range goExec.FindAllStringSubmatch(src, -1) {
		names = append(names, m[1]+m[2])
	}
	return names
}

// commandProbe names a command as the table does: an absolute path as the
// command of its base name, so /usr/sbin/runc is covered by file:/usr/sbin/runc.
func commandProbe(name string) string {
	if name == "/usr/bin/python3" {
		return "cmd:python3"
	}
	return "cmd:" + filepath.Base(name)
}

var (
	commandWord     = regexp.MustCompile(`^[a-z][a-z0-9._+-]*$`)
	funcDef         = regexp.MustCompile(`(?m)^\s*([A-Za-z_][A-Za-z0-9_-]*)\s*\(\)\s*\{`)
	heredoc         = regexp.MustCompile(`<<-?\s*['"]?([A-Za-z_]+)['"]?`)
	casePattern     = regexp.MustCompile(`^\s*[^()$"'=]+\)`)
	testExpression  = regexp.MustCompile(`\[\[ [^]]*\]\]`) // operands, not commands: [[ $a != b ]]
	shellSeparators = regexp.MustCompile(`\|\||&&|[|;&({}]|\$\(|\bthen\b|\bdo\b|\belse\b|\bif\b|\bwhile\b|\buntil\b|!`)
)

// shellCommands lists the words in command position of a bash script: at
// the start of a command, after a pipe, a list operator, a subshell or a
// command substitution, or a `command -v` / `exec` / `sudo` / `env` prefix.
// Single-quoted text (awk and sed programs), comments, heredoc bodies and
// case patterns are left out; the script's own functions and variables are
// not commands.
func shellCommands(src string) []string {
	own := map[string]bool{}
	for _, m := range funcDef.FindAllStringSubmatch(src, -1) {
		own[m[1]] = true
	}
	src = stripQuoted(withoutHeredocs(src))
	src = arithmetic.ReplaceAllString(arrayLiteral.ReplaceAllString(parameter.ReplaceAllString(src, "$$x"), "="), " ")
	var names []string
	for _, line := range strings.Split(src, "\n") {
		line = testExpression.ReplaceAllString(casePattern.ReplaceAllString(line, ""), " ")
		for _, part := range shellSeparators.Split(line, -1) {
			words := strings.Fields(part)
			for len(words) > 0 && (strings.Contains(words[0], "=") || words[0] == "command" && len(words) > 1 && words[1] == "-v" ||
				words[0] == "-v" || words[0] == "exec" || words[0] == "time" || words[0] == "sudo" || words[0] == "-n" || words[0] == "env") {
				words = words[1:]
			}
			if len(words) == 0 || !commandWord.MatchString(words[0]) || own[words[0]] {
				continue
			}
			names = append(names, words[0])
		}
	}
	return names
}

var (
	parameter    = regexp.MustCompile(`\$\{[^{}]*\}`)
	arithmetic   = regexp.MustCompile(`\$?\(\([^()]*(\([^()]*\)[^()]*)*\)\)`)
	arrayLiteral = regexp.MustCompile(`=\([^()]*\)`)
)

// withoutHeredocs drops the bodies of here-documents (data, not commands).
func withoutHeredocs(src string) string {
	var b strings.Builder
	var end string
	for _, line := range strings.Split(src, "\n") {
		if end != "" {
			if strings.TrimSpace(line) == end {
				end = ""
			}
			b.WriteString("\n")
			continue
		}
		if m := heredoc.FindStringSubmatch(line); m != nil {
			end = m[1]
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// stripQuoted drops comments, the text of single-quoted strings (sed and
// awk programs, format strings) and of double-quoted ones, keeping the
// command substitutions inside the latter.
func stripQuoted(src string) string {
	var b strings.Builder
	inSingle, inDouble, depth := false, false, 0
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case inSingle:
			if c == '\'' {
				inSingle = false
			}
			if c == '\n' {
				b.WriteByte(c)
			}
		case c == '\\' && i+1 < len(src):
			i++
		case inDouble && depth == 0:
			switch {
			case c == '"':
				inDouble = false
			case c == '$' && i+1 < len(src) && src[i+1] == '(':
				depth = 1
				b.WriteString(" $(")
				i++
			case c == '\n':
				b.WriteByte(c)
			}
		case c == '#' && (i == 0 || strings.IndexByte(" \t\n;", src[i-1]) >= 0):
			for i < len(src) && src[i] != '\n' {
				i++
			}
			b.WriteByte('\n')
		case c == '\'' && !inDouble:
			inSingle = true
		case c == '"' && !inDouble:
			inDouble = true
		default:
			if inDouble {
				switch c {
				case '(':
					depth++
				case ')':
					depth--
					if depth == 0 {
						b.WriteString(") ")
						continue
					}
				}
			}
			b.WriteByte(c)
		}
	}
	return b.String()
}

var pyImport = regexp.MustCompile(`(?m)^\s*(?:import\s+([A-Za-z0-9_.]+)|from\s+([A-Za-z0-9_.]+)\s+import)`)

// pythonImports lists the top-level modules a script imports, following its
// imports of the scripts beside it (training/inputs.py -> preprocess.py).
func pythonImports(t *testing.T, rel string, seen map[string]bool) []string {
	t.Helper()
	if seen[rel] {
		return nil
	}
	seen[rel] = true
	data, err := os.ReadFile(repoPath(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	var modules []string
	for _, m := range pyImport.FindAllStringSubmatch(string(data), -1) {
		module, _, _ := strings.Cut(m[1]+m[2], ".")
		local := filepath.Join(filepath.Dir(rel), module+".py")
		if _, err := os.Stat(repoPath(t, local)); err == nil {
			modules = append(modules, pythonImports(t, local, seen)...)
			continue
		}
		modules = append(modules, module)
	}
	return modules
}

// pythonStdlib is the standard library of the Python the scripts run on.
func pythonStdlib(t *testing.T) map[string]bool {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 is needed to tell the standard library from the packages the scripts import: %v", err)
	}
	out, err := exec.Command(python, "-c", "import sys; print('\\n'.join(sys.stdlib_module_names))").Output()
	if err != nil {
		t.Fatalf("python3 lists no stdlib_module_names (Python 3.10 or later needed): %v", err)
	}
	stdlib := map[string]bool{}
	for _, name := range strings.Fields(string(out)) {
		stdlib[name] = true
	}
	return stdlib
}

// The commands a newcomer or CI runs first install what they need
// themselves: nothing is left to a step by hand.
func TestEntryPointsCallTheInstaller(t *testing.T) {
	for script, call := range map[string]string{
		".ci/run":              "hack/deps.sh full",
		"hack/test.sh":         "hack/deps.sh",
		"hack/local-deploy.sh": "hack/deps.sh deploy",
	} {
		data, err := os.ReadFile(repoPath(t, script))
		if err != nil {
			t.Fatal(err)
		}
		called := false
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), call) {
				called = true
			}
		}
		if !called {
			t.Errorf("%s does not run %q: a fresh machine would lack its system packages", script, call)
		}
	}
}
