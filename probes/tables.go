package probes

import (
	"debug/dwarf"
	"debug/elf"
	"debug/gosym"
	"fmt"
	"sort"
	"strings"
)

// symtab is the binary's function table, parsed from .gopclntab: every
// function by name, and the names sorted.
type symtab struct {
	funcs map[string]Func
	names []string
}

// dwarfTab is the binary's DWARF (the sections analysis reads, see
// dwarfSections), with its subprograms and struct and basic types indexed
// by name.
type dwarfTab struct {
	data *dwarf.Data
	idx  map[string]dwarf.Offset
	err  error
}

// Compact drops the parsed tables (functions, DWARF): a daemon keeps an
// executable it traces for as long as it runs, and they are most of its
// memory (bench/README §8g), while tracing it once compiled reads only the
// file's segments and the few addresses found at Open (type names, read-only
// literals, file offsets). Analysis after Compact reads them again, at the
// cost of a first analysis. Holders of a table keep theirs: Compact is safe
// beside any other call (analysis itself is one caller at a time:
// debug/dwarf caches the types it reads unguarded).
func (b *Binary) Compact() {
	b.tablesMu.Lock()
	defer b.tablesMu.Unlock()
	b.syms, b.dw = nil, nil
}

// symbols returns the function table, parsing it again after Compact. A
// table that cannot be read again (it could at Open, from the same open
// file) is empty: every function is then unknown, as errors say.
func (b *Binary) symbols() *symtab {
	b.tablesMu.Lock()
	defer b.tablesMu.Unlock()
	if b.syms == nil {
		b.syms = &symtab{funcs: map[string]Func{}}
		if data, err := b.pclntab(); err == nil {
			if t, err := b.parseSymbols(data); err == nil {
				b.syms = t
			}
		}
	}
	return b.syms
}

// pclnSection returns the function table's section: .gopclntab, or
// .data.rel.ro.gopclntab in position-independent builds by Go 1.22 and
// older; nil when the file has neither.
func pclnSection(f *elf.File) *elf.Section {
	if s := f.Section(".gopclntab"); s != nil {
		return s
	}
	return f.Section(".data.rel.ro.gopclntab")
}

// pclntab returns the bytes of the function table's section.
func (b *Binary) pclntab() ([]byte, error) {
	if b.f == nil {
		return nil, fmt.Errorf("%s: no file", b.Path)
	}
	pcln := pclnSection(b.f)
	if pcln == nil {
		return nil, fmt.Errorf("%s: %w (no .gopclntab)", b.Path, ErrNotGo)
	}
	data, err := pcln.Data()
	if err != nil {
		return nil, fmt.Errorf("%s: read .gopclntab: %w", b.Path, err)
	}
	return data, nil
}

// parseSymbols reads the function table from .gopclntab's bytes; function
// entries count from b.textAt.
func (b *Binary) parseSymbols(data []byte) (*symtab, error) {
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, b.textAt))
	if err != nil {
		return nil, fmt.Errorf("%s: parse .gopclntab: %w", b.Path, err)
	}
	t := &symtab{funcs: make(map[string]Func, len(tab.Funcs)), names: make([]string, 0, len(tab.Funcs))}
	dups := map[string][]Func{}
	for _, fn := range tab.Funcs {
		f := Func{Name: fn.Name, Entry: fn.Entry, End: fn.End}
		if old, ok := t.funcs[fn.Name]; ok {
			if dups[fn.Name] == nil {
				dups[fn.Name] = []Func{old}
			}
			dups[fn.Name] = append(dups[fn.Name], f)
			continue
		}
		t.funcs[fn.Name] = f
		t.names = append(t.names, fn.Name)
	}
	for name, cands := range dups {
		t.funcs[name] = b.pickReal(cands)
	}
	sort.Strings(t.names)
	return t, nil
}

// dwarfData returns the binary's DWARF with its index, nil when it has
// none; it reads and indexes it on first use (again after Compact).
func (b *Binary) dwarfData() (*dwarfTab, error) {
	b.tablesMu.Lock()
	defer b.tablesMu.Unlock()
	if b.dw == nil {
		b.dw = b.readDWARF()
	}
	if b.dw.err != nil || b.dw.data == nil {
		return nil, b.dw.err
	}
	return b.dw, nil
}

func (b *Binary) readDWARF() *dwarfTab {
	if !b.HasDWARF || b.f == nil {
		return &dwarfTab{}
	}
	d, info, abbrev, err := b.dwarfSections()
	if err != nil {
		return &dwarfTab{err: fmt.Errorf("%s: read DWARF: %w", b.Path, err)}
	}
	idx, err := indexDWARF(d, info, abbrev)
	if err != nil {
		return &dwarfTab{err: fmt.Errorf("%s: read DWARF: %w", b.Path, err)}
	}
	return &dwarfTab{data: d, idx: idx}
}

// dwarfSections returns the binary's DWARF made of the sections analysis
// reads (entries, their abbreviations, the strings and addresses they
// refer to, and DWARF 4 type units, which Go does not emit), and the
// bytes of .debug_info and .debug_abbrev. elf's own DWARF decompresses
// every debug section, the line, frame and location tables too, which are
// most of them and are never read here. Unlike it, this applies no
// relocation sections to them: an executable is linked, its debug sections
// hold their final values (Go's linker writes none for them).
func (b *Binary) dwarfSections() (*dwarf.Data, []byte, []byte, error) {
	secs := map[string][]byte{}
	var types [][]byte
	for _, s := range b.f.Sections {
		name, ok := strings.CutPrefix(s.Name, ".debug_")
		if !ok {
			name, ok = strings.CutPrefix(s.Name, ".zdebug_")
		}
		switch {
		case !ok:
			continue
		case name != "info" && name != "abbrev" && name != "str" && name != "addr" && name != "str_offsets" && name != "line_str" && name != "types":
			continue
		}
		data, err := s.Data()
		if err != nil && uint64(len(data)) < s.Size {
			return nil, nil, nil, fmt.Errorf("%s: %w", s.Name, err)
		}
		if name == "types" {
			types = append(types, data)
			continue
		}
		secs[name] = data
	}
	d, err := dwarf.New(secs["abbrev"], nil, nil, secs["info"], nil, nil, nil, secs["str"])
	if err != nil {
		return nil, nil, nil, err
	}
	for _, name := range []string{"addr", "str_offsets", "line_str"} {
		if secs[name] == nil {
			continue
		}
		if err := d.AddSection(".debug_"+name, secs[name]); err != nil {
			return nil, nil, nil, err
		}
	}
	for i, t := range types {
		if err := d.AddTypes(fmt.Sprintf("types-%d", i), t); err != nil {
			return nil, nil, nil, err
		}
	}
	return d, secs["info"], secs["abbrev"], nil
}

// DWARFHasType reports whether the binary's DWARF describes the struct
// type or function named name: a type the linker left out (no code uses
// it) is not there.
func (b *Binary) DWARFHasType(name string) bool {
	dw, err := b.dwarfData()
	if err != nil || dw == nil {
		return false
	}
	_, ok := dw.idx[name]
	return ok
}

// dwarfEntry returns the DWARF, a reader positioned after the named
// subprogram, struct type or basic type, and its entry.
func (b *Binary) dwarfEntry(name string) (*dwarf.Data, *dwarf.Reader, *dwarf.Entry, error) {
	dw, err := b.dwarfData()
	if err != nil || dw == nil {
		return nil, nil, nil, err
	}
	off, ok := dw.idx[name]
	if !ok {
		return nil, nil, nil, nil
	}
	r := dw.data.Reader()
	r.Seek(off)
	e, err := r.Next()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read DWARF of %s: %w", name, err)
	}
	return dw.data, r, e, nil
}
