package probes

import (
	"cmp"
	"debug/buildinfo"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
)

// ErrNotGo is returned by Open for executables that Go did not build.
var ErrNotGo = errors.New("not a Go binary")

// Module is one module the binary was built from.
type Module struct {
	Path, Version string
}

// Func is a function's code range in the binary's virtual addresses.
type Func struct {
	Name       string
	Entry, End uint64
}

// Binary is a Go executable opened for analysis. It reads functions from
// .gopclntab, which survives `-ldflags=-s -w`, so stripped binaries work the
// same as others; DWARF is used when present.
type Binary struct {
	Path      string
	Arch      Arch   // its instruction set, from the ELF header
	GoVersion string // as the toolchain reports it, e.g. "go1.26.8"
	Main      Module
	Modules   []Module
	Stripped  bool // no .symtab
	HasDWARF  bool
	// PIE: each process adds its own load bias to the link addresses
	// (see LoadBiasAt); a Binary holds link addresses only, so that the
	// processes of one executable share its analysis and its probes.
	PIE bool

	f *elf.File
	// textAt is runtime.text, where .gopclntab's function entries count
	// from (see textStart); typesAt is runtime.types, where type names'
	// offsets count from (see typesBase). Both are found once, at Open.
	textAt, typesAt uint64

	// tables are the parsed function table and DWARF: what analysis and
	// compiling read, and most of a Binary's memory. Compact drops them;
	// the next analysis reads them again (see tables.go).
	tablesMu sync.Mutex
	syms     *symtab
	dw       *dwarfTab

	typesMu   sync.Mutex
	typeNames map[uint64]string
}

// Open reads the executable at path.
func Open(file string) (*Binary, error) {
	f, err := elf.Open(file)
	if err != nil {
		return nil, openError(file, err)
	}
	b, err := analyze(file, f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return b, nil
}

// openError words why file could not be opened as an ELF executable; the
// cause stays for errors.Is (os.ErrNotExist, os.ErrPermission, ErrNotGo).
func openError(file string, err error) error {
	var fe *elf.FormatError
	switch {
	case errors.Is(err, os.ErrNotExist):
		return worded{file + ": no such file", os.ErrNotExist}
	case errors.Is(err, os.ErrPermission):
		return worded{file + ": permission denied", os.ErrPermission}
	case errors.Is(err, syscall.EISDIR):
		return fmt.Errorf("%s: a directory, not an executable", file)
	case errors.As(err, &fe), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF): // too short for a header
		return fmt.Errorf("%s: %w: not an ELF executable", file, ErrNotGo)
	}
	return fmt.Errorf("%s: not an ELF executable: %w", file, err)
}

// worded is an error said in its own words that is still its cause.
type worded struct {
	msg   string
	cause error
}

func (w worded) Error() string { return w.msg }
func (w worded) Unwrap() error { return w.cause }

func analyze(file string, f *elf.File) (*Binary, error) {
	arch, err := archOf(f.Machine)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	bi, err := buildinfo.ReadFile(file)
	if err != nil {
		if strings.HasSuffix(err.Error(), "not a Go executable") {
			return nil, fmt.Errorf("%s: %w (it has no Go build information)", file, ErrNotGo)
		}
		return nil, fmt.Errorf("%s: %w (%v)", file, ErrNotGo, err)
	}
	b := &Binary{Path: file, Arch: arch, GoVersion: bi.GoVersion, f: f, PIE: f.Type == elf.ET_DYN,
		Main: Module{bi.Main.Path, bi.Main.Version}}
	for _, m := range bi.Deps {
		b.Modules = append(b.Modules, Module{m.Path, m.Version})
	}
	b.Stripped = f.Section(".symtab") == nil
	b.HasDWARF = f.Section(".debug_info") != nil || f.Section(".zdebug_info") != nil

	pcln := pclnSection(f)
	text := f.Section(".text")
	if pcln == nil || text == nil {
		return nil, fmt.Errorf("%s: %w (no .gopclntab)", file, ErrNotGo)
	}
	data, err := pcln.Data()
	if err != nil {
		return nil, fmt.Errorf("%s: read .gopclntab: %w", file, err)
	}
	md := moduleWord(f, arch, pcln)
	b.textAt = textStart(data, text, md)
	if types := b.typesSection(); types != nil {
		b.typesAt = typesBase(types, md, b.Release())
	}
	if b.syms, err = b.parseSymbols(data); err != nil {
		return nil, err
	}
	return b, nil
}

// moduleWord returns a reader of the words of the binary's
// runtime.moduledata, the runtime's table of where its sections are: its
// first word points at the pcHeader. A position-independent binary's is
// filled by dynamic relocations; otherwise the file holds it (in
// .noptrdata, or .go.module from Go 1.26). nil when it cannot be found.
func moduleWord(f *elf.File, arch Arch, pcln *elf.Section) func(off uint64) (uint64, bool) {
	if f.Class != elf.ELFCLASS64 {
		return nil
	}
	if rela := f.Section(".rela.dyn"); rela != nil {
		if rd, err := rela.Data(); err == nil {
			relative := uint64(arch.relativeReloc())
			addends := map[uint64]uint64{}
			md, found := uint64(0), false
			for i := 0; i+24 <= len(rd); i += 24 {
				if binary.LittleEndian.Uint64(rd[i+8:])&0xffffffff != relative {
					continue
				}
				at, v := binary.LittleEndian.Uint64(rd[i:]), binary.LittleEndian.Uint64(rd[i+16:])
				addends[at] = v
				if v == pcln.Addr && !found {
					md, found = at, true
				}
			}
			if found {
				return func(off uint64) (uint64, bool) { v, ok := addends[md+off]; return v, ok }
			}
		}
	}
	for _, sec := range f.Sections {
		if sec.Type != elf.SHT_PROGBITS || sec.Flags&(elf.SHF_ALLOC|elf.SHF_WRITE) != elf.SHF_ALLOC|elf.SHF_WRITE {
			continue
		}
		d, err := sec.Data()
		if err != nil {
			continue
		}
		for o := (8 - sec.Addr%8) % 8; o+8 <= uint64(len(d)); o += 8 {
			if binary.LittleEndian.Uint64(d[o:]) == pcln.Addr {
				md := d[o:]
				return func(off uint64) (uint64, bool) {
					if off+8 > uint64(len(md)) {
						return 0, false
					}
					return binary.LittleEndian.Uint64(md[off:]), true
				}
			}
		}
	}
	return nil
}

// Offsets in runtime.moduledata (Go 1.19 to 1.27): pcHeader, six slices,
// findfunctab, minpc, maxpc, text, etext, noptrdata, enoptrdata, data,
// edata, bss, ebss, noptrbss, enoptrbss, covctrs and ecovctrs (from Go
// 1.20), end, gcdata, gcbss, types.
const (
	mdText      = 8 + 6*24 + 3*8
	mdTypes119  = mdText + 13*8
	mdTypes120  = mdTypes119 + 2*8
	pcHeaderLen = 32
)

// textStart returns the address function entries in .gopclntab count from:
// runtime.text (debug/gosym takes the address it is given). It is .text's
// start when Go links alone, but an externally linked binary (cgo, as
// distributions build Go programs) has the C runtime's code first: Debian
// 12's prometheus starts its Go code 256 bytes into .text, and every probe
// would land that far before its function. The pcHeader of Go 1.18 and
// later records it, when the file holds it; else the module data does.
func textStart(data []byte, text *elf.Section, md func(uint64) (uint64, bool)) uint64 {
	if len(data) < pcHeaderLen {
		return text.Addr
	}
	switch binary.LittleEndian.Uint32(data) {
	case 0xfffffff0, 0xfffffff1: // Go 1.18-1.19, Go 1.20 and later
	default:
		return text.Addr // older tables have no textStart
	}
	inText := func(v uint64) bool { return v >= text.Addr && v < text.Addr+text.Size }
	// magic, pads, minLC, ptrSize (8 bytes), nfunc, nfiles, textStart.
	if v := binary.LittleEndian.Uint64(data[24:]); v != 0 {
		if inText(v) {
			return v
		}
		return text.Addr
	}
	if md != nil {
		if v, ok := md(mdText); ok && inText(v) {
			return v
		}
	}
	return text.Addr
}

// typesBase returns runtime.types, the address type names' offsets count
// from: the start of sec (.rodata, or .data.rel.ro in position-independent
// builds) when Go links alone, further on in an externally linked binary
// whose C data comes first. The module data md says where.
func typesBase(sec *elf.Section, md func(uint64) (uint64, bool), release string) uint64 {
	if md == nil {
		return sec.Addr
	}
	off := uint64(mdTypes120)
	if release == "go1.18" || release == "go1.19" {
		off = mdTypes119
	}
	if v, ok := md(off); ok && v >= sec.Addr && v < sec.Addr+sec.Size {
		return v
	}
	return sec.Addr
}

// pickReal chooses among functions of one name: .gopclntab names an ABI
// wrapper (say runtime.goexit1.abi0, for callers in assembly) exactly like
// the function it wraps. A probe belongs on the real one, which every call
// reaches; the wrapper is the candidate whose code calls another candidate.
func (b *Binary) pickReal(cands []Func) Func {
	entries := map[uint64]bool{}
	for _, c := range cands {
		entries[c.Entry] = true
	}
	for _, c := range cands {
		code, err := b.Code(c)
		if err != nil {
			continue
		}
		if !callsAny(b.Arch, code, c.Entry, entries) {
			return c
		}
	}
	return cands[0]
}

// Close releases the file.
func (b *Binary) Close() error { return b.f.Close() }

// Func returns the function named name.
func (b *Binary) Func(name string) (Func, bool) {
	fn, ok := b.symbols().funcs[name]
	return fn, ok
}

// Functions returns the number of functions in the binary.
func (b *Binary) Functions() int { return len(b.symbols().names) }

// Match returns the functions whose names match pattern: a substring of
// the qualified name, or a glob of the whole name when it has a wildcard
// (see namePattern).
func (b *Binary) Match(pattern string) []string {
	var out []string
	match := namePattern(pattern)
	for _, n := range b.symbols().names {
		if match(n) {
			out = append(out, n)
		}
	}
	return out
}

// Suggest returns up to three function names close to name, for errors about
// unknown symbols.
func (b *Binary) Suggest(name string) []string {
	type cand struct {
		name string
		d    int
	}
	short := name
	if i := strings.LastIndexAny(name, "./)"); i >= 0 {
		short = name[i+1:]
	}
	var cs []cand
	for _, n := range b.symbols().names {
		// Cheap prefilter: share the last component or the package.
		if !strings.Contains(strings.ToLower(n), strings.ToLower(short)) && !samePackage(n, name) {
			continue
		}
		cs = append(cs, cand{n, levenshtein(n, name)})
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].d < cs[j].d || cs[i].d == cs[j].d && cs[i].name < cs[j].name })
	var out []string
	for i := 0; i < len(cs) && i < 3; i++ {
		if cs[i].d <= len(name)/2+2 {
			out = append(out, cs[i].name)
		}
	}
	return out
}

func samePackage(a, b string) bool {
	pa, pb := a, b
	if i := strings.Index(a, "."); i >= 0 {
		pa = a[:i]
	}
	if i := strings.Index(b, "."); i >= 0 {
		pb = b[:i]
	}
	return pa == pb
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Code returns the machine code of fn.
func (b *Binary) Code(fn Func) ([]byte, error) {
	return b.read(fn.Entry, int(fn.End-fn.Entry))
}

// eachCode calls fn with the machine code of every function whose name
// starts with prefix ("" for all), in address order, until fn returns an
// error. It reads the code a span of neighbouring functions at a time: a
// read per function was most of a scan over a package's code, let alone
// over every function's (some 10,000 in a small program).
func (b *Binary) eachCode(prefix string, fn func(Func, []byte) error) error {
	var fns []Func
	for _, name := range b.symbols().names {
		if strings.HasPrefix(name, prefix) {
			f, _ := b.Func(name)
			fns = append(fns, f)
		}
	}
	slices.SortFunc(fns, func(x, y Func) int { return cmp.Compare(x.Entry, y.Entry) })
	// Spans no larger than spanMax, with no gap between functions over
	// spanGap.
	const spanMax, spanGap = 1 << 20, 4 << 10
	var err error
	for i := 0; i < len(fns); {
		lo, hi, j := fns[i].Entry, fns[i].End, i+1
		for ; j < len(fns) && fns[j].Entry >= hi && fns[j].Entry <= hi+spanGap && fns[j].End-lo <= spanMax; j++ {
			hi = fns[j].End
		}
		span, spanErr := b.read(lo, int(hi-lo))
		for _, f := range fns[i:j] {
			code := span
			if spanErr == nil {
				code = span[f.Entry-lo : f.End-lo : f.End-lo]
			} else if code, err = b.Code(f); err != nil {
				// Alone, for its own error.
				return fmt.Errorf("%s: %w", f.Name, err)
			}
			if err := fn(f, code); err != nil {
				return err
			}
		}
		i = j
	}
	return nil
}

// read returns n bytes at virtual address addr from the file.
func (b *Binary) read(addr uint64, n int) ([]byte, error) {
	for _, p := range b.f.Progs {
		if p.Type != elf.PT_LOAD || addr < p.Vaddr || addr+uint64(n) > p.Vaddr+p.Filesz {
			continue
		}
		buf := make([]byte, n)
		if _, err := p.ReadAt(buf, int64(addr-p.Vaddr)); err != nil {
			return nil, fmt.Errorf("read %#x: %w", addr, err)
		}
		return buf, nil
	}
	return nil, fmt.Errorf("address %#x (%d bytes) is not in a loaded segment", addr, n)
}

// LoadBiasAt returns the load bias of a process that mapped the start of
// this file (file offset 0) at address start: what it adds to the link
// addresses. A PIE need not be linked at 0.
func (b *Binary) LoadBiasAt(start uint64) uint64 {
	for _, p := range b.f.Progs {
		if p.Type == elf.PT_LOAD && p.Off == 0 {
			return start - p.Vaddr
		}
	}
	return start
}

// ReadOnlyString reads n bytes at addr (a link address: a process's minus
// its load bias) from the binary file, when the whole range lies in a
// segment the process cannot write: string literals live there, and the
// file holds exactly what the process sees. ok is false otherwise.
func (b *Binary) ReadOnlyString(addr, n uint64) (string, bool) {
	for _, p := range b.f.Progs {
		if p.Type != elf.PT_LOAD || p.Flags&elf.PF_W != 0 || addr < p.Vaddr || addr+n > p.Vaddr+p.Filesz {
			continue
		}
		buf := make([]byte, n)
		if _, err := p.ReadAt(buf, int64(addr-p.Vaddr)); err != nil {
			return "", false
		}
		return string(buf), true
	}
	return "", false
}

// FileOffset converts a virtual address in the binary to the file offset
// uprobes are attached at.
func (b *Binary) FileOffset(addr uint64) (uint64, error) {
	for _, p := range b.f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && addr >= p.Vaddr && addr < p.Vaddr+p.Memsz {
			return addr - p.Vaddr + p.Off, nil
		}
	}
	return 0, fmt.Errorf("address %#x is not in an executable segment", addr)
}
