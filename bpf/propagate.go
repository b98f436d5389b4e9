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
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(cg), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return filepath.Join(root, p), nil
		}
	}
	return "", fmt.Errorf("process %d is in no cgroup v2", pid)
}
