package probes

import (
	"debug/elf"
	"fmt"
)

// Arch is a target's instruction set: it decides Go's register ABI (how
// many integer registers carry arguments and results), how its code is
// disassembled to place probes, and which of the placement refinements
// that read machine code apply.
type Arch uint8

// The architectures tcagent traces. The zero value is amd64, the first one
// supported.
const (
	AMD64 Arch = iota
	ARM64
)

func (a Arch) String() string {
	if a == ARM64 {
		return "arm64"
	}
	return "amd64"
}

// StepsRET says whether the kernel single-steps a uprobe on a RET, the
// cost the emulated call sites avoid: x86-64's does (out of line), arm64's
// simulates RET as it does branches, so a probe left on RETs there costs
// no more than one on a site would.
func (a Arch) StepsRET() bool { return a != ARM64 }

// archOf maps an ELF machine to the Arch tcagent supports.
func archOf(m elf.Machine) (Arch, error) {
	switch m {
	case elf.EM_X86_64:
		return AMD64, nil
	case elf.EM_AARCH64:
		return ARM64, nil
	}
	return 0, fmt.Errorf("%v executables are not supported, only x86-64 and arm64", m)
}

// regs is how many integer and floating-point registers Go's internal ABI
// assigns arguments and results to: RAX, RBX, RCX, RDI, RSI, R8-R11 and
// X0-X14 on amd64; R0-R15 and F0-F15 on arm64. An integer register's
// number in a Param's Regs is its index in that order, which the BPF
// programs map to the architecture's registers (bpf/tracer.h's ABI_REG).
func (a Arch) regs() (ints, floats int) {
	if a == ARM64 {
		return 16, 16
	}
	return 9, 15
}

// relativeReloc is the ELF dynamic relocation type a position-independent
// Go binary uses to fill its pointers (the module data's among them).
func (a Arch) relativeReloc() uint32 {
	if a == ARM64 {
		return uint32(elf.R_AARCH64_RELATIVE)
	}
	return uint32(elf.R_X86_64_RELATIVE)
}

// errX86Only is why what reads call sites in x86-64 machine code is not
// had on another architecture: ends moved from RETs to emulated CALL sites
// (there the probes stay on the RETs, which the arm64 kernel simulates
// itself, with no single-step) and the sites sarama's consumers are read
// at (those are left out, said in the set's reason). CallSites, which the
// routes set reads at, finds arm64's BLs too.
func errX86Only(a Arch, what string) error {
	return fmt.Errorf("%w: %s: call sites are read in x86-64 machine code only, not %s", ErrNoCallSite, what, a)
}
