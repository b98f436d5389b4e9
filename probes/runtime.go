package probes

import (
	"bytes"
	"debug/dwarf"
	"encoding/binary"
	"fmt"
	"strings"
)

// Runtime holds the offsets inside the target's runtime that every probe
// needs: where g keeps its goroutine id and its stack top.
type Runtime struct {
	GoidOffset       uint16
	StackHiOffset    uint16
	ParentGoidOffset uint16
	// HasParentGoid is false for Go 1.19 and 1.20, whose g has no
	// parentGoid: goroutine lineage then comes from runtime.newproc1's
	// callergp argument (see CompileRuntime).
	HasParentGoid bool
	// Source says where the offsets came from: "DWARF" or "table".
	Source string
}

// gOffsets was read from the DWARF of runtime.g of binaries built by each
// release (see kernel-tests, which checks it against DWARF for the releases
// it builds). g.stack is the first field and stack.hi its second word in all.
// A parentGoid of 0: the release has none (g.stack is at 0).
var gOffsets = map[string]struct{ goid, parentGoid uint16 }{
	"go1.19": {152, 0}, "go1.20": {152, 0},
	"go1.21": {152, 272}, "go1.22": {152, 272}, "go1.23": {160, 280},
	"go1.24": {160, 280}, "go1.25": {152, 272}, "go1.26": {152, 280},
}

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

// Runtime finds the runtime offsets: from DWARF when the binary has it, else
// from the table of known releases.
func (b *Binary) Runtime() (Runtime, error) {
	goid, ok, err := b.dwarfField("runtime.g", "goid")
	if err != nil {
		return Runtime{}, err
	}
	if ok {
		parent, ok, err := b.dwarfField("runtime.g", "parentGoid")
		if err != nil {
			return Runtime{}, err
		}
		return Runtime{GoidOffset: uint16(goid), StackHiOffset: 8, ParentGoidOffset: uint16(parent), HasParentGoid: ok, Source: "DWARF"}, nil
	}
	off, ok := gOffsets[b.Release()]
	if !ok {
		return Runtime{}, fmt.Errorf("%s: built by %s, which has no DWARF and is not in the offsets table (Go 1.19 to 1.26)", b.Path, b.GoVersion)
	}
	return Runtime{GoidOffset: off.goid, StackHiOffset: 8, ParentGoidOffset: off.parentGoid, HasParentGoid: off.parentGoid != 0, Source: "table"}, nil
}

// DWARFField returns the offset of field in the struct type typ (e.g.
// "net/http.Request", "Method") from the binary's DWARF; ok is false when
// the binary has no DWARF or no such field.
func (b *Binary) DWARFField(typ, field string) (int64, bool, error) {
	return b.dwarfField(typ, field)
}

// DWARFHasStruct reports whether the binary's DWARF describes the struct
// type typ: then a field DWARFField does not find does not exist in it. A
// type the linker left out has no DWARF at all.
func (b *Binary) DWARFHasStruct(typ string) bool {
	_, e, err := b.dwarfEntry(typ)
	return err == nil && e != nil && e.Tag == dwarf.TagStructType
}

func (b *Binary) dwarfField(typ, field string) (int64, bool, error) {
	r, e, err := b.dwarfEntry(typ)
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

// TypeName reads the name of the runtime type descriptor at addr (an address
// in the running process, e.g. itab._type), "" when it cannot. It needs no
// symbols: names are offsets from the start of the types area
// (runtime.types), which the linker places at the start of .data.rel.ro in
// position-independent builds (the descriptors hold pointers to relocate)
// and of .rodata otherwise.
func (b *Binary) TypeName(addr uint64) string {
	b.typesMu.Lock()
	defer b.typesMu.Unlock()
	if n, ok := b.typeNames[addr]; ok {
		return n
	}
	n := b.typeName(addr - b.LoadBias)
	if b.typeNames == nil {
		b.typeNames = map[uint64]string{}
	}
	b.typeNames[addr] = n
	return n
}

func (b *Binary) typeName(addr uint64) string {
	types := b.f.Section(".data.rel.ro")
	if types == nil {
		types = b.f.Section(".rodata")
	}
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
	at := b.typesBase(types) + uint64(int64(nameOff))
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
	const tflagExtraStar = 1 << 1
	if tflag&tflagExtraStar != 0 && strings.HasPrefix(s, "*") {
		s = s[1:]
	}
	return s
}

// TypeAddr returns the link-time address of the runtime type descriptor
// named name (as TypeName reads it back), so that a BPF program can tell a
// value's dynamic type by comparing an itab's type pointer with it (plus
// LoadBias). It needs no symbols: it finds the name's bytes, then the
// descriptor whose Str names them; ok is false when the binary has none.
// Only pointer types are looked for, and names of at most 127 bytes.
func (b *Binary) TypeAddr(name string) (uint64, bool) {
	const kindPtr, tflagExtraStar = 22, 1 << 1
	if len(name) == 0 || len(name) > 127 || name[0] != '*' {
		return 0, false
	}
	types := b.f.Section(".data.rel.ro")
	if types == nil {
		types = b.f.Section(".rodata")
	}
	if types == nil {
		return 0, false
	}
	// A name: one flags byte, a one-byte varint length here, the bytes.
	want := append([]byte{byte(len(name))}, name...)
	offs := map[int32]bool{}
	for _, sec := range []string{".rodata", ".data.rel.ro"} {
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
			offs[int32(int64(at)-int64(b.typesBase(types)))] = true
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
