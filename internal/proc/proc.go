// Package proc reads what tcagent needs from /proc: a process's cgroup, the
// container it runs in, where it mapped its executable, and the BPF objects
// it holds (bpf.go). Every reader of /proc/PID/cgroup goes through here, so
// that the agent, the daemon's selectors and the socket side agree on one
// parse.
package proc

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// Cgroup returns the content of /proc/PID/cgroup.
func Cgroup(pid int) (string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", fmt.Errorf("pid %d: read cgroup: %w", pid, err)
	}
	return string(data), nil
}

// CgroupV2 returns the cgroup v2 path in a /proc/PID/cgroup content (its
// "0::" line), false when the process is in no cgroup v2.
func CgroupV2(content string) (string, bool) {
	for _, line := range strings.Split(content, "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p, true
		}
	}
	return "", false
}

var containerIDRE = regexp.MustCompile(`[0-9a-f]{64}`)

// ContainerID finds the container id in a /proc/PID/cgroup content or a
// cgroup path: the last 64-hex-digit name in it (docker, containerd, CRI-O
// and podman put it there); "" when there is none.
func ContainerID(cgroup string) string {
	var id string
	for _, line := range strings.Split(cgroup, "\n") {
		if ids := containerIDRE.FindAllString(line, -1); len(ids) > 0 {
			id = ids[len(ids)-1]
		}
	}
	return id
}

// MappedAt returns where process pid mapped the start of its executable:
// the same for every process of a non-PIE binary, and what tells apart
// the processes of a PIE one.
func MappedAt(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return 0, fmt.Errorf("pid %d: read maps: %w", pid, err)
	}
	target, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	target = strings.TrimSuffix(target, " (deleted)")
	start, ok := mappedAt(string(data), target)
	if !ok {
		return 0, fmt.Errorf("pid %d: cannot find where %s is mapped", pid, target)
	}
	return start, nil
}

// mappedAt finds, in a /proc/PID/maps content, the start of the mapping of
// file offset 0 of the file at path.
func mappedAt(maps, path string) (uint64, bool) {
	for _, line := range strings.Split(maps, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[2] != "00000000" || strings.Join(f[5:], " ") != path && f[5] != path {
			continue
		}
		start, err := strconv.ParseUint(strings.Split(f[0], "-")[0], 16, 64)
		if err != nil {
			continue
		}
		return start, true
	}
	return 0, false
}
