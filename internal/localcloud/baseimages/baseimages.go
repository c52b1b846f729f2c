// Package baseimages makes the stand-ins for model/Dockerfile's public base
// images from Debian packages (hack/stand-in-bases.sh: debootstrap, cached by
// a key of everything that goes into them) and returns them as the
// Dockerfile's build arguments.
package baseimages

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
)

// Ensure makes (or finds cached) the stand-in bases in the Docker engine and
// returns the build arguments naming them: BUILD_IMAGE, ONNXRUNTIME_IMAGE and
// RUNTIME_IMAGE. projectDir holds hack/stand-in-bases.sh; its progress goes
// to progress. A cold run takes minutes, a cached one well under a second.
func Ensure(ctx context.Context, projectDir string, progress io.Writer) (map[string]string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(projectDir, "hack", "stand-in-bases.sh"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = io.MultiWriter(&stderr, progress)
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("making the stand-in base images failed (hack/stand-in-bases.sh: %v): %s", err, lastLine(stderr.String()))
	}
	args := map[string]string{}
	scanner := bufio.NewScanner(&stdout)
	for scanner.Scan() {
		key, value, ok := strings.Cut(scanner.Text(), "=")
		if !ok || value == "" {
			return nil, fmt.Errorf("hack/stand-in-bases.sh printed %q; expected KEY=VALUE lines", scanner.Text())
		}
		args[key] = value
	}
	for _, key := range []string{"BUILD_IMAGE", "ONNXRUNTIME_IMAGE", "RUNTIME_IMAGE"} {
		if args[key] == "" {
			return nil, fmt.Errorf("hack/stand-in-bases.sh did not name %s", key)
		}
	}
	return args, nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndex(s, "\n")+1:]
}
