package probes

import (
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Runtime holds the offsets inside the target's runtime that every probe
// needs: where g keeps its goroutine id, its stack top and its creator's id.
type Runtime struct {
	GoidOffset    uint16
	StackHiOffset uint16
	// ParentGoidOffset is where g keeps the id of the goroutine that
	// created it. 0 means the release's g has no such field (Go 1.19 and
	// 1.20, see HasParentGoid); no field of g is at 0, where g.stack is.
	ParentGoidOffset uint16
	// Source says where the offsets came from: "DWARF", "table" (the
	// offsets of known releases, goffsets_table.go) or "machine code"
	// (recovered from the runtime's code, for a stripped binary of a
	// release newer than the table: see gorecover.go).
	Source string
}

// HasParentGoid reports whether the release's runtime.g records its
// creator's goroutine id (Go 1.21 and newer).
func (rt Runtime) HasParentGoid() bool { return rt.ParentGoidOffset != 0 }

// Release returns the binary's Go release without the patch level, e.g.
// "go1.26".
func (b *Binary) Release() string {
	v := b.GoVersion
	if i := strings.IndexAny(v, " -"); i >= 0 {
		v = v[:i]
	}
	parts := strings.SplitN(v, ".", 3)
	if len(parts) >= 2 {
		v = parts[0] + "." + parts[1]
	}
	// Release candidates: go1.27rc1.
	if i := strings.Index(v, "rc"); i >= 0 {
		v = v[:i]
	}
	return v
}

// plausibleTypeName reports whether s can be the name of a Go type as the
// runtime spells it: non-empty valid UTF-8 without control characters.
// A name read through offsets that do not fit the binary is garbage, which
// this tells in all but freak cases.
func plausibleTypeName(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// Runtime finds the runtime offsets: from DWARF when the binary has it
// (whatever its version string says), else from the table of known
// releases (when the runtime's machine code does not contradict it), else
// from the machine code; an error says which could not be had. Releases
// whose g has no parentGoid (Go 1.19 and 1.20) have a ParentGoidOffset of 0:
// goroutine lineage then comes from runtime.newproc1's callergp argument
// (see CompileRuntime).
func (b *Binary) Runtime() (Runtime, error) {
	goid, ok, err := b.dwarfField("runtime.g", "goid")
	if err != nil {
		return Runtime{}, err
	}
	if ok {
		stack, okS, err := b.dwarfField("runtime.g", "stack")
		if err != nil {
			return Runtime{}, err
		}
		hi, okH, err := b.dwarfField("runtime.stack", "hi")
		if err != nil {
			return Runtime{}, err
		}
		if !okS || !okH {
			return Runtime{}, fmt.Errorf("%s: built by %s, whose DWARF has runtime.g.goid but not g.stack.hi", b.Path, b.GoVersion)
		}
		parent, _, err := b.dwarfField("runtime.g", "parentGoid")
		if err != nil {
			return Runtime{}, err
		}
		return Runtime{GoidOffset: uint16(goid), StackHiOffset: uint16(stack + hi), ParentGoidOffset: uint16(parent), Source: "DWARF"}, nil
	}
	g, hi, parent, err := b.gFromCode()
	if rt, ok := TableRuntime(b.Release()); ok {
		// The version string is only a string: where the code itself says
		// otherwise, neither is trusted.
		if err == nil && (g != rt.GoidOffset || hi != rt.StackHiOffset || parent != rt.ParentGoidOffset) {
			return Runtime{}, fmt.Errorf("%s: built by %s, whose runtime.g offsets in the table (goid %d, stack.hi %d, parentGoid %d) are not those its machine code uses (%d, %d, %d)",
				b.Path, b.GoVersion, rt.GoidOffset, rt.StackHiOffset, rt.ParentGoidOffset, g, hi, parent)
		}
		return rt, nil
	}
	if err != nil {
		return Runtime{}, fmt.Errorf("%s: built by %s, which has no DWARF and is not in the offsets table (Go %s), and runtime.g's offsets could not be read from its machine code: %w",
			b.Path, b.GoVersion, GoTableSpan(), err)
	}
	return Runtime{GoidOffset: g, StackHiOffset: hi, ParentGoidOffset: parent, Source: "machine code"}, nil
}

// GoTableReleases returns the releases the runtime offsets table covers,
// oldest first ("go1.19", …).
func GoTableReleases() []string {
	var rs []string
	for r := range gOffsets {
		rs = append(rs, r)
	}
	sort.Slice(rs, func(i, j int) bool { return ReleaseLess(rs[i], rs[j]) })
	return rs
}

// GoTableSpan names the table's releases as "1.19 to 1.27".
func GoTableSpan() string {
	rs := GoTableReleases()
	if len(rs) == 0 {
		return "none"
	}
	return strings.TrimPrefix(rs[0], "go") + " to " + strings.TrimPrefix(rs[len(rs)-1], "go")
}

// ReleaseLess orders releases ("go1.9" before "go1.19") by their minor
// number.
func ReleaseLess(a, b string) bool {
	minor := func(r string) int {
		n, _ := strconv.Atoi(strings.TrimPrefix(r, "go1."))
		return n
	}
	return minor(a) < minor(b)
}

// DWARFField returns the offset of field in the struct type typ (e.g.
// "net/http.Request", "Method") from the binary's DWARF; ok is false when
// the binary has no DWARF or no such field.
func (b *Binary) DWARFField(typ, field string) (int64, bool, error) {
	return b.dwarfField(typ, field)
}

func (b *Binary) dwarfField(typ, field string) (int64, bool, error) {
	_, r, e, err := b.dwarfEntry(typ)
	if err != nil || e == nil || e.Tag != dwarf.TagStructType {
		return 0, false, err
	}
	for e.Children {
		c, err := r.Next()
		if err != nil {
			return 0, false, fmt.Errorf("read DWARF of %s: %w", typ, err)
		}
		if c == nil || c.Tag == 0 {
			break
		}
		if c.Tag == dwarf.TagMember && c.Val(dwarf.AttrName) == field {
			if off, ok := c.Val(dwarf.AttrDataMemberLoc).(int64); ok {
				return off, true, nil
			}
		}
	}
	return 0, false, nil
}

// TypeName reads the name of the runtime type descriptor at addr (a link
// address: what a process read, e.g. itab._type, minus its load bias), ""
// when it cannot or when what
// it reads does not look like a type's name. It needs no symbols: names are
// offsets from the start of the types area (runtime.types, see
// typesSection).
func (b *Binary) TypeName(addr uint64) string {
	b.typesMu.Lock()
	defer b.typesMu.Unlock()
	if n, ok := b.typeNames[addr]; ok {
		return n
	}
	n := b.typeName(addr)
	if b.typeNames == nil {
		b.typeNames = map[uint64]string{}
	}
	b.typeNames[addr] = n
	return n
}

// typesSection returns the section that starts with the types area
// (runtime.types), which every type descriptor's name and method offsets
// count from. Go 1.27 gives the descriptors a section of their own,
// .go.type (.data.rel.ro.go.type in position-independent builds, whose
// descriptors hold pointers to relocate); before, the linker placed them at
// the start of .data.rel.ro in position-independent builds and of .rodata
// otherwise.
func (b *Binary) typesSection() *elf.Section {
	for _, name := range []string{".go.type", ".data.rel.ro.go.type", ".data.rel.ro", ".rodata"} {
		if s := b.f.Section(name); s != nil {
			return s
		}
	}
	return nil
}

func (b *Binary) typeName(addr uint64) string {
	types := b.typesSection()
	if types == nil {
		return ""
	}
	// internal/abi.Type: TFlag at 20, Str (nameOff) at 40.
	hdr, err := b.read(addr, 48)
	if err != nil {
		return ""
	}
	tflag := hdr[20]
	nameOff := int32(binary.LittleEndian.Uint32(hdr[40:]))
	at := b.typesAt + uint64(int64(nameOff))
	// A name: one flags byte, a varint length, the bytes.
	head, err := b.read(at, 11)
	if err != nil {
		return ""
	}
	n, w := binary.Uvarint(head[1:])
	if w <= 0 || n > 1024 {
		return ""
	}
	name, err := b.read(at+1+uint64(w), int(n))
	if err != nil {
		return ""
	}
	s := string(name)
	if !plausibleTypeName(s) {
		return "" // not a name: the offsets do not fit this binary
	}
	const tflagExtraStar = 1 << 1
	if tflag&tflagExtraStar != 0 && strings.HasPrefix(s, "*") {
		s = s[1:]
	}
	return s
}

// TypeAddr returns the link-time address of the runtime type descriptor
// named name (as TypeName reads it back), so that a BPF program can tell a
// value's dynamic type by comparing an itab's type pointer with it (plus
// the process's load bias). It needs no symbols: it finds the name's bytes, then the
// descriptor whose Str names them; ok is false when the binary has none.
// Only pointer types are looked for, and names of at most 127 bytes.
func (b *Binary) TypeAddr(name string) (uint64, bool) {
	const kindPtr, tflagExtraStar = 22, 1 << 1
	if len(name) == 0 || len(name) > 127 || name[0] != '*' {
		return 0, false
	}
	types := b.typesSection()
	if types == nil {
		return 0, false
	}
	// A name: one flags byte, a one-byte varint length here, the bytes.
	want := append([]byte{byte(len(name))}, name...)
	offs := map[int32]bool{}
	for _, sec := range []string{".rodata", ".data.rel.ro", ".go.type", ".data.rel.ro.go.type"} {
		s := b.f.Section(sec)
		if s == nil {
			continue
		}
		data, err := s.Data()
		if err != nil {
			continue
		}
		for i := 1; ; {
			j := bytes.Index(data[i:], want)
			if j < 0 {
				break
			}
			at := s.Addr + uint64(i+j-1) // the flags byte
			offs[int32(int64(at)-int64(b.typesAt))] = true
			i += j + 1
		}
	}
	if len(offs) == 0 {
		return 0, false
	}
	data, err := types.Data()
	if err != nil {
		return 0, false
	}
	// internal/abi.Type: TFlag at 20, Kind_ at 23, Str (nameOff) at 40.
	start := (8 - types.Addr%8) % 8
	for o := start; o+48 <= uint64(len(data)); o += 8 {
		if data[o+23]&0x1f != kindPtr || data[o+20]&tflagExtraStar != 0 {
			continue
		}
		if offs[int32(binary.LittleEndian.Uint32(data[o+40:]))] {
			return types.Addr + o, true
		}
	}
	return 0, false
}

// TableRuntime returns the runtime offsets table's entry for release
// ("go1.27"), false when the table does not cover it.
func TableRuntime(release string) (Runtime, bool) {
	off, ok := gOffsets[release]
	if !ok {
		return Runtime{}, false
	}
	return Runtime{GoidOffset: off.goid, StackHiOffset: off.stackHi, ParentGoidOffset: off.parentGoid, Source: "table"}, true
}
