package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// containerMemoryLimit is the memory limit of this process's cgroup (v2
// memory.max or v1 memory.limit_in_bytes), 0 if there is none.
func containerMemoryLimit() int64 {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return 0
	}
	defer f.Close()
	var limit int64
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		// hierarchy-ID:controllers:path
		fields := strings.SplitN(lines.Text(), ":", 3)
		if len(fields) != 3 {
			continue
		}
		var file string
		switch {
		case fields[0] == "0" && fields[1] == "":
			file = filepath.Join("/sys/fs/cgroup", fields[2], "memory.max")
		case hasController(fields[1], "memory"):
			file = filepath.Join("/sys/fs/cgroup/memory", fields[2], "memory.limit_in_bytes")
		default:
			continue
		}
		raw, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
		if err != nil || n <= 0 || n >= 1<<62 { // "max", or v1's "unlimited"
			continue
		}
		if limit == 0 || n < limit {
			limit = n
		}
	}
	return limit
}

func hasController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}
