package node

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// What the node needs from the host besides the toolchain: Debian's runc,
// CNI plugins, iptables and iproute2.
const (
	runcPath  = "/usr/sbin/runc"
	cniBinDir = "/usr/lib/cni"
)

// HostPrograms are the Debian programs the node runs (package in brackets).
var HostPrograms = map[string]string{
	runcPath:                               "runc",
	filepath.Join(cniBinDir, "bridge"):     "containernetworking-plugins",
	filepath.Join(cniBinDir, "host-local"): "containernetworking-plugins",
	filepath.Join(cniBinDir, "loopback"):   "containernetworking-plugins",
	"/usr/sbin/iptables":                   "iptables",
	"/usr/sbin/ip":                         "iproute2",
}

// shimSocketDir is where containerd puts its shims' sockets, whatever its
// configuration says (socket paths must be short); Stop removes it (if empty)
// when it was not there before.
const shimSocketDir = "/run/containerd/s"

// cgroupRoot is the cgroup (in every v1 hierarchy) under which the kubelet
// and runc put all pod cgroups.
const cgroupRoot = "/mlops-node"

// lockPath serializes local nodes on one machine: the bridge, the iptables
// chains of kube-proxy and the cgroup root are machine-wide.
const lockPath = "/run/lock/mlops-localcloud-node.lock"

// tunedSysctls are the kernel settings the node's parts change (the kubelet's
// kernel tunables, the bridge plugin's forwarding, kube-proxy's
// route_localnet); Stop puts back what they were.
var tunedSysctls = []string{
	"vm/overcommit_memory",
	"vm/panic_on_oom",
	"kernel/panic",
	"kernel/panic_on_oops",
	"kernel/keys/root_maxkeys",
	"kernel/keys/root_maxbytes",
	"net/ipv4/ip_forward",
	"net/ipv4/conf/all/route_localnet",
	"net/ipv4/conf/all/forwarding",
	"net/ipv6/conf/all/forwarding",
	"net/bridge/bridge-nf-call-iptables",
	"net/bridge/bridge-nf-call-ip6tables",
}

// lockHost takes the machine-wide node lock, waiting while another node runs.
func lockHost(ctx context.Context, logf func(string, ...any)) (*os.File, error) {
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	waiting := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", lockPath, err)
		}
		if !waiting {
			logf("node: another local node holds %s; waiting for it to stop", lockPath)
			waiting = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("another local node still holds %s: %w", lockPath, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// HoldMachine takes the machine-wide node lock without starting a node, so
// that a check of the host after a node stopped sees no other node's
// processes, interfaces or chains. Release it with the returned function.
func HoldMachine(ctx context.Context, logf func(string, ...any)) (release func(), err error) {
	f, err := lockHost(ctx, logf)
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil
}

func readSysctls() map[string]string {
	values := map[string]string{}
	for _, name := range tunedSysctls {
		if value, err := os.ReadFile(filepath.Join("/proc/sys", name)); err == nil {
			values[name] = strings.TrimSpace(string(value))
		}
	}
	return values
}

func restoreSysctls(saved map[string]string) error {
	var errs []error
	now := readSysctls()
	for name, value := range saved {
		if now[name] == value {
			continue
		}
		if err := os.WriteFile(filepath.Join("/proc/sys", name), []byte(value), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restore sysctl %s=%s: %w", name, value, err))
		}
	}
	return errors.Join(errs...)
}

// cgroupMounts returns the mount points of the cgroup hierarchies.
func cgroupMounts() ([]string, error) {
	mounts, err := mountInfo()
	if err != nil {
		return nil, err
	}
	var points []string
	for _, m := range mounts {
		if m.fsType == "cgroup" || m.fsType == "cgroup2" {
			points = append(points, m.mountPoint)
		}
	}
	return points, nil
}

// nodeCgroups returns the node's cgroup directories in every hierarchy,
// deepest first.
func nodeCgroups() ([]string, error) {
	points, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, point := range points {
		root := filepath.Join(point, cgroupRoot)
		err := filepath.WalkDir(root, func(path string, entry fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if entry.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return dirs, nil
}

// killCgroups SIGKILLs every process left in the node's cgroups and removes
// them, deepest first.
func killCgroups(ctx context.Context) error {
	dirs, err := nodeCgroups()
	if err != nil {
		return err
	}
	for _, dir := range dirs {
		for _, pid := range cgroupPIDs(dir) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	var errs []error
	for _, dir := range dirs {
		// A killed process leaves its cgroup a moment after the signal.
		for {
			err := syscall.Rmdir(dir)
			if err == nil || errors.Is(err, syscall.ENOENT) {
				break
			}
			if !errors.Is(err, syscall.EBUSY) || ctx.Err() != nil {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dir, err))
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}

func cgroupPIDs(dir string) []int {
	content, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var pids []int
	for _, field := range strings.Fields(string(content)) {
		if pid, err := strconv.Atoi(field); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

type mount struct{ mountPoint, fsType string }

func mountInfo() ([]mount, error) {
	content, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var mounts []mount
	scanner := bufio.NewScanner(bytes.NewReader(content))
	for scanner.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(scanner.Text())
		sep := slices.Index(fields, "-")
		if len(fields) < 5 || sep < 0 || sep+1 >= len(fields) {
			continue
		}
		mounts = append(mounts, mount{mountPoint: unescapeMountPath(fields[4]), fsType: fields[sep+1]})
	}
	return mounts, scanner.Err()
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space...).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				out.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		out.WriteByte(s[i])
	}
	return out.String()
}

// MountsUnder lists the mount points at or below dir, deepest first.
func MountsUnder(dir string) ([]string, error) {
	mounts, err := mountInfo()
	if err != nil {
		return nil, err
	}
	var points []string
	for _, m := range mounts {
		if m.mountPoint == dir || strings.HasPrefix(m.mountPoint, dir+"/") {
			points = append(points, m.mountPoint)
		}
	}
	slices.Reverse(points) // mountinfo lists parents before their children
	return points, nil
}

// removeState unmounts everything under the node's state and socket
// directories and removes them.
func removeState() error {
	var errs []error
	for _, dir := range []string{stateDir, socketDir} {
		if err := unmountUnder(dir); err != nil {
			errs = append(errs, err)
			continue // never remove files below a mount that is still there
		}
		errs = append(errs, os.RemoveAll(dir))
	}
	return errors.Join(errs...)
}

func unmountUnder(dir string) error {
	points, err := MountsUnder(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, point := range points {
		if err := syscall.Unmount(point, 0); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			if err := syscall.Unmount(point, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", point, err))
			}
		}
	}
	return errors.Join(errs...)
}

// processesOf lists the pids of running processes whose executable is one
// of binaries (absolute paths).
func processesOf(binaries ...string) []int {
	return pidsWhere(func(procDir string) bool {
		exe, err := os.Readlink(filepath.Join(procDir, "exe"))
		return err == nil && slices.Contains(binaries, strings.TrimSuffix(exe, " (deleted)"))
	})
}

// shimsOf lists the pids of containerd shims serving the containerd at
// socket, whichever binary they run (a killed run's may be another build).
func shimsOf(socket string) []int {
	return pidsWhere(func(procDir string) bool {
		cmdline, err := os.ReadFile(filepath.Join(procDir, "cmdline"))
		if err != nil {
			return false
		}
		args := strings.Split(string(cmdline), "\x00")
		return strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") && slices.Contains(args, socket)
	})
}

// pidsWhere lists the pids of running processes whose /proc directory
// matches; processes that end meanwhile are passed over.
func pidsWhere(match func(procDir string) bool) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, entry := range entries {
		pid, err := strconv.Atoi(entry.Name())
		if err == nil && match(filepath.Join("/proc", entry.Name())) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// linkExists reports whether a network interface of that name exists.
func linkExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}

func deleteLink(ctx context.Context, name string) error {
	if !linkExists(name) {
		return nil
	}
	if out, err := exec.CommandContext(ctx, "ip", "link", "delete", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip link delete %s: %v: %s", name, err, out)
	}
	return nil
}

// IptablesChains lists the chains of the IPv4 and IPv6 tables whose names
// start with one of prefixes, as "iptables:table:chain".
func IptablesChains(ctx context.Context, prefixes ...string) ([]string, error) {
	var chains []string
	for _, tool := range []string{"iptables-save", "ip6tables-save"} {
		out, err := exec.CommandContext(ctx, tool).Output()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", tool, err)
		}
		table := ""
		for line := range strings.Lines(string(out)) {
			line = strings.TrimSpace(line)
			switch {
			case strings.HasPrefix(line, "*"):
				table = line[1:]
			case strings.HasPrefix(line, ":"):
				chain, _, _ := strings.Cut(line[1:], " ")
				for _, prefix := range prefixes {
					if strings.HasPrefix(chain, prefix) {
						chains = append(chains, tool+":"+table+":"+chain)
						break
					}
				}
			}
		}
	}
	return chains, nil
}

// deleteChains flushes and deletes the given "tool-save:table:chain" chains,
// first removing every rule that jumps to them.
func deleteChains(ctx context.Context, chains []string) error {
	var errs []error
	run := func(tool string, args ...string) error {
		out, err := exec.CommandContext(ctx, tool, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %v: %s", tool, strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
		return nil
	}
	byTool := map[string][]string{}
	for _, c := range chains {
		tool, rest, _ := strings.Cut(c, ":")
		byTool[strings.TrimSuffix(tool, "-save")] = append(byTool[strings.TrimSuffix(tool, "-save")], rest)
	}
	for tool, tableChains := range byTool {
		// Rules referring to the chains: found in the save output.
		out, err := exec.CommandContext(ctx, tool+"-save").Output()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		doomed := map[string]bool{}
		for _, tc := range tableChains {
			doomed[tc] = true
		}
		table := ""
		for line := range strings.Lines(string(out)) {
			line = strings.TrimSpace(line)
			if strings.HasPrefix(line, "*") {
				table = line[1:]
				continue
			}
			fields := strings.Fields(line)
			if len(fields) < 2 || fields[0] != "-A" || doomed[table+":"+fields[1]] {
				continue
			}
			if j := slices.Index(fields, "-j"); j > 0 && j+1 < len(fields) && doomed[table+":"+fields[j+1]] {
				if err := run(tool, append([]string{"-t", table, "-D"}, fields[1:]...)...); err != nil {
					errs = append(errs, err)
				}
			}
		}
		for _, tc := range tableChains {
			table, chain, _ := strings.Cut(tc, ":")
			errs = append(errs, run(tool, "-t", table, "-F", chain))
		}
		for _, tc := range tableChains {
			table, chain, _ := strings.Cut(tc, ":")
			errs = append(errs, run(tool, "-t", table, "-X", chain))
		}
	}
	return errors.Join(errs...)
}
