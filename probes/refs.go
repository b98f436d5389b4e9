package probes

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"strings"

	"golang.org/x/arch/x86/x86asm"
)

// storedAt lists the addresses in the binary's data (allocated sections
// that hold no code) where the 8-byte word addr is stored: where a function
// pointer to the function at addr lives (an itab's method slot, a funcval),
// or a pointer to a data symbol. In a PIE each such word is also the
// addend of a relative relocation; both are read, so a linker that leaves
// the word zero in place is not missed.
func (b *Binary) storedAt(addr uint64) ([]uint64, error) {
	seen := map[uint64]bool{}
	var at []uint64
	add := func(a uint64) {
		if !seen[a] {
			seen[a] = true
			at = append(at, a)
		}
	}
	buf := make([]byte, chunkSize)
	for _, s := range b.f.Sections {
		var err error
		switch {
		case s.Type == elf.SHT_RELA:
			err = sectionChunks(s, buf, func(d []byte) {
				for i := 0; i+24 <= len(d); i += 24 {
					if uint32(binary.LittleEndian.Uint64(d[i+8:])) == b.Arch.relativeReloc() &&
						binary.LittleEndian.Uint64(d[i+16:]) == addr {
						add(binary.LittleEndian.Uint64(d[i:]))
					}
				}
			})
		case s.Type == elf.SHT_PROGBITS && s.Flags&elf.SHF_ALLOC != 0 && s.Flags&elf.SHF_EXECINSTR == 0:
			at0 := s.Addr
			err = sectionChunks(s, buf, func(d []byte) {
				for i := 0; i+8 <= len(d); i += 8 { // pointers are 8-aligned
					if binary.LittleEndian.Uint64(d[i:]) == addr {
						add(at0 + uint64(i))
					}
				}
				at0 += uint64(len(d))
			})
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.Name, err)
		}
	}
	return at, nil
}

// chunkSize is how much of a section sectionChunks reads at a time: a
// multiple of a relocation's 24 bytes and of a pointer's 8.
const chunkSize = 24 * 32 << 10

// sectionChunks calls fn with the bytes of s in order, chunkSize at a time
// (the last chunk shorter), read into buf. A large binary's data sections
// are tens of MB, which Section.Data would allocate anew at every call
// (about a third of analysing Debian's prometheus).
func sectionChunks(s *elf.Section, buf []byte, fn func([]byte)) error {
	r := s.Open()
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			fn(buf[:n])
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return nil
		case err != nil:
			return err
		}
	}
}

// codeRef is one instruction that addresses addr RIP-relative.
type codeRef struct {
	fn    Func
	insts []inst
	i     int // the instruction's index in insts
}

// codeRefs finds every instruction, in every function, whose RIP-relative
// operand is addr (a LEAQ taking a symbol's address, a load or a compare).
// A scan of the bytes for a displacement that could reach addr (the
// instruction may end 0 to 4 bytes past it, an immediate's size) spares
// disassembling the functions that cannot; a hit is checked on the real
// instructions.
func (b *Binary) codeRefs(addr uint64) ([]codeRef, error) {
	if b.Arch != AMD64 {
		return nil, errX86Only(b.Arch, fmt.Sprintf("the references to %#x", addr))
	}
	var refs []codeRef
	err := b.eachCode("", func(fn Func, code []byte) error {
		if !mayRef(code, fn.Entry, addr) {
			return nil
		}
		insts, err := disassemble(code)
		if err != nil {
			return fmt.Errorf("%s: %w", fn.Name, err)
		}
		for i, in := range insts {
			for _, a := range in.Args {
				if m, ok := a.(x86asm.Mem); ok && m.Base == x86asm.RIP &&
					uint64(int64(fn.Entry)+int64(in.off)+int64(in.Len)+m.Disp) == addr {
					refs = append(refs, codeRef{fn, insts, i})
					break
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// By function name, then in code order.
	slices.SortStableFunc(refs, func(x, y codeRef) int { return strings.Compare(x.fn.Name, y.fn.Name) })
	return refs, nil
}

// mayRef reports whether code at base holds a 32-bit displacement that,
// relative to the end of an instruction 0 to 4 bytes past it, is addr: a
// superset of its RIP-relative references to addr.
func mayRef(code []byte, base, addr uint64) bool {
	for i := 0; i+4 <= len(code); i++ {
		disp := int64(int32(binary.LittleEndian.Uint32(code[i:])))
		end := int64(base) + int64(i) + 4 + disp
		if d := int64(addr) - end; d >= 0 && d <= 4 {
			return true
		}
	}
	return false
}
