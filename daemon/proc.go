package daemon

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/tcagent/tcagent/internal/proc"
)

// Process is what the selectors look at, read from /proc.
type Process struct {
	PID     int
	Exe     string // the executable's path (" (deleted)" removed)
	Cmdline string // arguments joined by spaces
	Cgroup  string // cgroup v2 path
	// ContainerID is the last 64-hex-digit component of the cgroup path.
	ContainerID string
	// PodUID is the Kubernetes pod's uid from the cgroup path.
	PodUID string
	File   FileID
}

// FileID tells executables apart: the file (device and inode, with the
// change time, since inode numbers are reused) and its Go build id, so
// that a binary rebuilt at the same path is never taken for the old one.
type FileID struct {
	Dev, Ino uint64
	Ctime    int64
	Size     int64
}

// readProcess reads pid's facts; an error means it is gone or unreadable.
func readProcess(pid int) (*Process, error) {
	p := &Process{PID: pid}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return nil, err
	}
	p.Exe = strings.TrimSuffix(exe, " (deleted)")
	var st syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/exe", pid), &st); err != nil {
		return nil, err
	}
	p.File = FileID{Dev: st.Dev, Ino: st.Ino, Ctime: st.Ctim.Nano(), Size: st.Size}
	cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, err
	}
	p.Cmdline = strings.TrimSpace(string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
	cg, err := proc.Cgroup(pid)
	if err != nil {
		return nil, err
	}
	p.Cgroup, _ = proc.CgroupV2(cg)
	p.ContainerID, p.PodUID = proc.ContainerID(cg), podUID(p.Cgroup)
	return p, nil
}

// The pod's uid in a kubelet cgroup path: "pod<uid>" (cgroupfs driver) or
// "-pod<uid with _ for ->.slice" (systemd driver).
var podUIDRE = regexp.MustCompile(`pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})`)

// podUID finds a Kubernetes pod's uid in a cgroup path.
func podUID(cg string) string {
	if m := podUIDRE.FindStringSubmatch(cg); m != nil {
		return strings.ReplaceAll(m[1], "_", "-")
	}
	return ""
}

// listens reports whether the process has a TCP socket listening on port.
func (p *Process) listens(port int) bool {
	inodes := map[string]bool{}
	for _, f := range []string{"tcp", "tcp6"} {
		for _, ino := range listeningInodes(fmt.Sprintf("/proc/%d/net/%s", p.PID, f), port) {
			inodes[ino] = true
		}
	}
	if len(inodes) == 0 {
		return false
	}
	dir := fmt.Sprintf("/proc/%d/fd", p.PID)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		l, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		if ino, ok := strings.CutPrefix(l, "socket:["); ok && inodes[strings.TrimSuffix(ino, "]")] {
			return true
		}
	}
	return false
}

// listeningInodes returns the socket inodes listening on port in a
// /proc/net/tcp table (the process's network namespace's).
func listeningInodes(table string, port int) []string {
	f, err := os.Open(table)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 10 || fs[3] != "0A" { // TCP_LISTEN
			continue
		}
		i := strings.LastIndexByte(fs[1], ':')
		if i < 0 {
			continue
		}
		if n, err := strconv.ParseUint(fs[1][i+1:], 16, 16); err == nil && int(n) == port {
			out = append(out, fs[9])
		}
	}
	return out
}

// errNotGo marks an executable Go did not build.
var errNotGo = errors.New("not a Go program")

// goBuildID returns the Go build id of the executable at file, or errNotGo.
func goBuildID(file string) (string, error) {
	f, err := elf.Open(file)
	if errors.Is(err, os.ErrPermission) {
		return "", err
	}
	if err != nil {
		return "", errNotGo
	}
	defer f.Close()
	if f.Section(".gopclntab") == nil && f.Section(".data.rel.ro.gopclntab") == nil {
		return "", errNotGo
	}
	if s := f.Section(".note.go.buildid"); s != nil {
		data, err := s.Data()
		// A note: namesz, descsz, type, "Go\x00\x00", then the id.
		if err == nil && len(data) > 16 {
			n := int(f.ByteOrder.Uint32(data[4:]))
			if 16+n <= len(data) {
				return string(data[16 : 16+n]), nil
			}
		}
	}
	// No note (some linkers drop it): the text's hash stands in for it.
	text := f.Section(".text")
	if text == nil {
		return "", errNotGo
	}
	h := fnv.New64a()
	if _, err := io.Copy(h, text.Open()); err != nil {
		return "", fmt.Errorf("%s: read text: %w", file, err)
	}
	return "text:" + hex.EncodeToString(h.Sum(nil)), nil
}
