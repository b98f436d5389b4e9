package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/tcagent/tcagent/internal/holds"
	"github.com/tcagent/tcagent/internal/proc"
)

// Propagator is the socket side of --propagate (propagate.c): a sock_ops
// program on a cgroup v2 puts the TCP connections its processes open in a
// sockhash, and an sk_msg program on it adds a traceparent header to the
// outgoing HTTP/1 requests the tracers hand it. One serves every tracer of
// an agent: a socket can carry one sk_msg program only.
type Propagator struct {
	objs          propagatorObjects
	sockops, msgs link.Link
}

// PropagatorCounters are the socket side's counts, summed over CPUs.
type PropagatorCounters struct {
	Injected uint64 // requests that got the header
	NotHTTP1 uint64 // sent unchanged: the first write was no HTTP/1.x request line
	NoRoom   uint64 // sent unchanged: the header could not be added
}

// LoadPropagator loads the socket programs and attaches them to the cgroup
// v2 directory cgroup (the traced processes' cgroup, or one above it).
func LoadPropagator(cgroup string) (*Propagator, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}
	p := &Propagator{}
	if err := loadPropagatorObjects(&p.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load the socket programs: %+v", ve)
		}
		return nil, fmt.Errorf("load the socket programs: %w", err)
	}
	var err error
	if p.msgs, err = link.AttachRawLink(link.RawLinkOptions{Target: p.objs.Socks.FD(), Program: p.objs.TcMsg, Attach: ebpf.AttachSkMsgVerdict}); err != nil {
		// Kernels before sockmap links: the program attaches to the map.
		if err2 := link.RawAttachProgram(link.RawAttachProgramOptions{Target: p.objs.Socks.FD(), Program: p.objs.TcMsg, Attach: ebpf.AttachSkMsgVerdict}); err2 != nil {
			p.Close()
			return nil, fmt.Errorf("attach sk_msg to the sockhash: %w", err2)
		}
		p.msgs = nil
	}
	if p.sockops, err = link.AttachCgroup(link.CgroupOptions{Path: cgroup, Attach: ebpf.AttachCGroupSockOps, Program: p.objs.TcSockops}); err != nil {
		p.Close()
		return nil, fmt.Errorf("attach sock_ops to cgroup %s: %w", cgroup, err)
	}
	return p, nil
}

// Counters reads the socket side's counters.
func (p *Propagator) Counters() (PropagatorCounters, error) {
	var c PropagatorCounters
	for _, f := range []struct {
		idx uint32
		dst *uint64
	}{{CounterPropInjected, &c.Injected}, {CounterPropNotHTTP1, &c.NotHTTP1}, {CounterPropNoRoom, &c.NoRoom}} {
		var perCPU []uint64
		if err := p.objs.PropCounters.Lookup(f.idx, &perCPU); err != nil {
			return c, fmt.Errorf("read counter %d: %w", f.idx, err)
		}
		for _, v := range perCPU {
			*f.dst += v
		}
	}
	return c, nil
}

// Close detaches the programs; connections leave the sockhash with it and
// go back to the kernel's plain send path.
func (p *Propagator) Close() error {
	var errs []error
	if p.sockops != nil {
		errs = append(errs, p.sockops.Close())
	}
	if p.msgs != nil {
		errs = append(errs, p.msgs.Close())
	}
	errs = append(errs, p.objs.Close())
	return errors.Join(errs...)
}

// HoldCgroup marks, in dir (holds.DefaultDir when empty), that this agent's
// socket programs are about to take the sockets of the cgroup v2 directory
// cgroup and every cgroup beneath it. A socket carries one sk_msg program:
// of two agents whose subtrees overlap, one would silently send its
// requests without their trace context. So the second one is refused,
// naming the first: an exclusive mark on the cgroup, a shared one on each
// cgroup above it, conflict exactly when one subtree holds the other.
// release gives the marks back.
func HoldCgroup(dir, cgroup string) (release func(), err error) {
	if dir == "" {
		dir = holds.DefaultDir
	}
	chain, err := cgroupChain(cgroup)
	if err != nil {
		return nil, err
	}
	var taken []*holds.Hold
	release = func() {
		for _, h := range taken {
			h.Release()
		}
	}
	for i, cg := range chain {
		var st unix.Stat_t
		if err := unix.Stat(cg, &st); err != nil {
			release()
			return nil, fmt.Errorf("cgroup %s: %w", cg, err)
		}
		own := i == len(chain)-1
		h, err := holds.Take(dir, CgroupLockName(st.Ino), own)
		var held *holds.HeldError
		if errors.As(err, &held) {
			release()
			where := fmt.Sprintf("cgroup %s or one beneath it", cg)
			if !own {
				where = fmt.Sprintf("cgroup %s, above this one (%s)", cg, cgroup)
			}
			return nil, fmt.Errorf("%w already propagates on the sockets of %s: a socket carries one agent's socket programs, so trace all the processes with one agent (--pid A,B,C) or with the daemon", held, where)
		}
		if err != nil {
			release()
			return nil, fmt.Errorf("%w (see --lock-dir)", err)
		}
		taken = append(taken, h)
	}
	return release, nil
}

// CgroupLockName names the mark of the cgroup whose directory has inode
// ino: the cgroup's id, the same under every mount of the hierarchy.
func CgroupLockName(ino uint64) string {
	return fmt.Sprintf("tcagent-cgroup-%d.lock", ino)
}

// cgroupChain lists the cgroup v2 directories from the hierarchy's root
// down to cgroup.
func cgroupChain(cgroup string) ([]string, error) {
	cgroup = filepath.Clean(cgroup)
	var st unix.Statfs_t
	if err := unix.Statfs(cgroup, &st); err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", cgroup, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return nil, fmt.Errorf("%s is not a cgroup v2 directory", cgroup)
	}
	chain := []string{cgroup}
	for d := filepath.Dir(cgroup); d != chain[len(chain)-1]; d = filepath.Dir(d) {
		if unix.Statfs(d, &st) != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
			break // above the mount
		}
		chain = append(chain, d)
	}
	for i, j := 0, len(chain)-1; i < j; i, j = i+1, j-1 {
		chain[i], chain[j] = chain[j], chain[i]
	}
	return chain, nil
}

// CgroupRoot returns where the cgroup v2 hierarchy is mounted.
func CgroupRoot() (string, error) {
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - FSTYPE SOURCE SUPER
		l, r, ok := strings.Cut(line, " - ")
		if !ok || !strings.HasPrefix(r, "cgroup2 ") {
			continue
		}
		if f := strings.Fields(l); len(f) >= 5 {
			return f[4], nil
		}
	}
	return "", errors.New("no cgroup v2 hierarchy is mounted (sock_ops programs attach to one)")
}

// CgroupOf returns the cgroup v2 directory of process pid: where its
// sockets' sock_ops programs run.
func CgroupOf(pid int) (string, error) {
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	root := ""
	for _, line := range strings.Split(string(mounts), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - FSTYPE SOURCE SUPER
		l, r, ok := strings.Cut(line, " - ")
		if !ok || !strings.HasPrefix(r, "cgroup2 ") {
			continue
		}
		if f := strings.Fields(l); len(f) >= 5 {
			root = f[4]
			break
		}
	}
	if root == "" {
		return "", errors.New("no cgroup v2 hierarchy is mounted (sock_ops programs attach to one)")
	}
	cg, err := proc.Cgroup(pid)
	if err != nil {
		return "", err
	}
	if p, ok := proc.CgroupV2(cg); ok {
		return filepath.Join(root, p), nil
	}
	return "", fmt.Errorf("process %d is in no cgroup v2", pid)
}
