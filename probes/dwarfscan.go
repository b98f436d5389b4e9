package probes

import (
	"debug/dwarf"
	"encoding/binary"
	"fmt"
)

// A scan of .debug_info for the entries analysis looks up by name (the
// compile units' subprograms, struct and basic types: see readDWARF).
// debug/dwarf decodes every attribute of every entry it passes, children
// included, and indexing a binary that way cost about a third of a new
// executable's analysis (bench/README §10). The scan decodes nothing: it
// steps over each entry by its abbreviation's forms, and hands the few
// entries of the indexed tags to debug/dwarf to decode. It accepts exactly
// the forms debug/dwarf does; any other is an error, as it is there.

// DWARF forms (DWARF 5, section 7.5.6), and the GNU ones debug/dwarf reads.
const (
	formAddr          = 0x01
	formBlock2        = 0x03
	formBlock4        = 0x04
	formData2         = 0x05
	formData4         = 0x06
	formData8         = 0x07
	formString        = 0x08
	formBlock         = 0x09
	formBlock1        = 0x0a
	formData1         = 0x0b
	formFlag          = 0x0c
	formSdata         = 0x0d
	formStrp          = 0x0e
	formUdata         = 0x0f
	formRefAddr       = 0x10
	formRef1          = 0x11
	formRef2          = 0x12
	formRef4          = 0x13
	formRef8          = 0x14
	formRefUdata      = 0x15
	formIndirect      = 0x16
	formSecOffset     = 0x17
	formExprloc       = 0x18
	formFlagPresent   = 0x19
	formStrx          = 0x1a
	formAddrx         = 0x1b
	formRefSup4       = 0x1c
	formStrpSup       = 0x1d
	formData16        = 0x1e
	formLineStrp      = 0x1f
	formRefSig8       = 0x20
	formImplicitConst = 0x21
	formLoclistx      = 0x22
	formRnglistx      = 0x23
	formRefSup8       = 0x24
	formStrx1         = 0x25
	formStrx2         = 0x26
	formStrx3         = 0x27
	formStrx4         = 0x28
	formAddrx1        = 0x29
	formAddrx2        = 0x2a
	formAddrx3        = 0x2b
	formAddrx4        = 0x2c
	formGnuAddrIndex  = 0x1f01
	formGnuStrIndex   = 0x1f02
	formGnuRefAlt     = 0x1f20
	formGnuStrpAlt    = 0x1f21
)

// scanAbbrev is one abbreviation: its tag, whether entries of it have
// children, and the forms of their attributes in order.
type scanAbbrev struct {
	tag      dwarf.Tag
	children bool
	forms    []uint64
}

// scanUnit is one unit's header as the scan needs it.
type scanUnit struct {
	dwarf64  bool
	version  uint16
	addrSize int
	abbrevs  map[uint64]*scanAbbrev
}

// dieScan reads entries of a .debug_info section.
type dieScan struct {
	info, abbrev []byte
	// tables caches the abbreviation tables by offset: Go's linker gives
	// every unit the same one.
	tables map[uint64]map[uint64]*scanAbbrev
}

// scanTopLevel calls found with the offset of every direct child of a
// compile unit whose tag is in tags, in section order.
func scanTopLevel(info, abbrev []byte, tags map[dwarf.Tag]bool, found func(dwarf.Offset)) error {
	s := &dieScan{info: info, abbrev: abbrev, tables: map[uint64]map[uint64]*scanAbbrev{}}
	for off := uint64(0); off < uint64(len(info)); {
		next, err := s.unit(off, tags, found)
		if err != nil {
			return fmt.Errorf("scan DWARF: unit at %#x: %w", off, err)
		}
		off = next
	}
	return nil
}

// unit scans the unit at off and returns where the next one starts.
func (s *dieScan) unit(off uint64, tags map[dwarf.Tag]bool, found func(dwarf.Offset)) (uint64, error) {
	r := &scanReader{b: s.info, at: off}
	u := &scanUnit{}
	n := uint64(r.u32())
	if n == 0xffffffff {
		u.dwarf64 = true
		n = r.u64()
	} else if n >= 0xfffffff0 {
		return 0, fmt.Errorf("reserved unit length %#x", n)
	}
	end := r.at + n
	if r.err != nil || end > uint64(len(s.info)) || end < r.at {
		return 0, fmt.Errorf("unit length %d past the section's end", n)
	}
	r.b = s.info[:end]
	u.version = r.u16()
	var abbrevOff uint64
	switch {
	case u.version >= 2 && u.version <= 4:
		abbrevOff = r.offset(u)
		u.addrSize = int(r.u8())
	case u.version == 5:
		unitType := r.u8()
		u.addrSize = int(r.u8())
		abbrevOff = r.offset(u)
		switch unitType {
		case 0x04, 0x05: // skeleton, split compile: a unit id
			r.skip(8)
		case 0x02, 0x06: // type, split type: its signature and offset
			r.skip(8)
			r.offset(u)
		}
	default:
		return 0, fmt.Errorf("DWARF version %d", u.version)
	}
	if r.err != nil {
		return 0, r.err
	}
	var err error
	if u.abbrevs, err = s.table(abbrevOff); err != nil {
		return 0, err
	}
	// The unit's entry: a compile unit's children are what is indexed;
	// any other unit is passed over whole, as readDWARF does.
	a, err := r.entry(u)
	if err != nil || a == nil {
		return end, err
	}
	if a.tag != dwarf.TagCompileUnit || !a.children {
		return end, nil
	}
	for r.at < end {
		at := r.at
		a, err := r.entry(u)
		if err != nil {
			return 0, err
		}
		if a == nil {
			break // the compile unit's last child
		}
		if tags[a.tag] {
			found(dwarf.Offset(at))
		}
		if a.children {
			if err := r.subtree(u); err != nil {
				return 0, err
			}
		}
	}
	return end, nil
}

// table parses the abbreviation table at off.
func (s *dieScan) table(off uint64) (map[uint64]*scanAbbrev, error) {
	if t, ok := s.tables[off]; ok {
		return t, nil
	}
	if off >= uint64(len(s.abbrev)) {
		return nil, fmt.Errorf("abbreviation table at %#x past .debug_abbrev's end", off)
	}
	r := &scanReader{b: s.abbrev, at: off}
	t := map[uint64]*scanAbbrev{}
	for {
		code := r.uleb()
		if code == 0 || r.err != nil {
			break
		}
		a := &scanAbbrev{tag: dwarf.Tag(r.uleb())}
		a.children = r.u8() != 0 // DW_CHILDREN_yes
		for {
			attr, form := r.uleb(), r.uleb()
			if attr == 0 && form == 0 || r.err != nil {
				break
			}
			if form == formImplicitConst {
				r.sleb() // the value is here, none in the entries
			}
			a.forms = append(a.forms, form)
		}
		t[code] = a
	}
	if r.err != nil {
		return nil, fmt.Errorf("abbreviation table at %#x: %w", off, r.err)
	}
	s.tables[off] = t
	return t, nil
}

// scanReader reads a section from at; the first read past its end sets err.
type scanReader struct {
	b   []byte
	at  uint64
	err error
}

func (r *scanReader) need(n uint64) bool {
	if r.err != nil {
		return false
	}
	if n > uint64(len(r.b)) || r.at > uint64(len(r.b))-n {
		r.err = fmt.Errorf("read of %d bytes at %#x past the end", n, r.at)
		return false
	}
	return true
}

func (r *scanReader) skip(n uint64) {
	if r.need(n) {
		r.at += n
	}
}

func (r *scanReader) u8() uint8 {
	if !r.need(1) {
		return 0
	}
	r.at++
	return r.b[r.at-1]
}

func (r *scanReader) u16() uint16 {
	if !r.need(2) {
		return 0
	}
	r.at += 2
	return binary.LittleEndian.Uint16(r.b[r.at-2:])
}

func (r *scanReader) u32() uint32 {
	if !r.need(4) {
		return 0
	}
	r.at += 4
	return binary.LittleEndian.Uint32(r.b[r.at-4:])
}

func (r *scanReader) u64() uint64 {
	if !r.need(8) {
		return 0
	}
	r.at += 8
	return binary.LittleEndian.Uint64(r.b[r.at-8:])
}

// offset reads a section offset: 8 bytes in 64-bit DWARF, else 4.
func (r *scanReader) offset(u *scanUnit) uint64 {
	if u.dwarf64 {
		return r.u64()
	}
	return uint64(r.u32())
}

func (r *scanReader) uleb() uint64 {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		c := r.u8()
		if r.err != nil {
			return 0
		}
		if shift < 64 {
			v |= uint64(c&0x7f) << shift
		}
		if c&0x80 == 0 {
			return v
		}
	}
}

func (r *scanReader) sleb() {
	for r.u8()&0x80 != 0 && r.err == nil {
	}
}

// cstring steps over a NUL-terminated string.
func (r *scanReader) cstring() {
	if r.err != nil {
		return
	}
	for i := r.at; i < uint64(len(r.b)); i++ {
		if r.b[i] == 0 {
			r.at = i + 1
			return
		}
	}
	r.err = fmt.Errorf("string at %#x without its end", r.at)
}

// entry steps over the entry at r.at and returns its abbreviation, nil
// for the null entry that ends a list of children.
func (r *scanReader) entry(u *scanUnit) (*scanAbbrev, error) {
	at := r.at
	code := r.uleb()
	if r.err != nil {
		return nil, r.err
	}
	if code == 0 {
		return nil, nil
	}
	a := u.abbrevs[code]
	if a == nil {
		return nil, fmt.Errorf("entry at %#x: unknown abbreviation %d", at, code)
	}
	for _, f := range a.forms {
		r.value(u, f)
	}
	if r.err != nil {
		return nil, fmt.Errorf("entry at %#x: %w", at, r.err)
	}
	return a, nil
}

// subtree steps over the children of the entry just read, and theirs.
func (r *scanReader) subtree(u *scanUnit) error {
	for depth := 1; depth > 0; {
		a, err := r.entry(u)
		if err != nil {
			return err
		}
		switch {
		case a == nil:
			depth--
		case a.children:
			depth++
		}
	}
	return nil
}

// value steps over one attribute's value of form f.
func (r *scanReader) value(u *scanUnit, f uint64) {
	switch f {
	case formFlagPresent, formImplicitConst:
	case formData1, formRef1, formFlag, formStrx1, formAddrx1:
		r.skip(1)
	case formData2, formRef2, formStrx2, formAddrx2:
		r.skip(2)
	case formStrx3, formAddrx3:
		r.skip(3)
	case formData4, formRef4, formRefSup4, formStrx4, formAddrx4:
		r.skip(4)
	case formData8, formRef8, formRefSig8, formRefSup8:
		r.skip(8)
	case formData16:
		r.skip(16)
	case formUdata, formRefUdata, formStrx, formAddrx, formLoclistx, formRnglistx, formGnuAddrIndex, formGnuStrIndex:
		r.uleb()
	case formSdata:
		r.sleb()
	case formAddr:
		r.skip(uint64(u.addrSize))
	case formRefAddr:
		if u.version == 2 {
			r.skip(uint64(u.addrSize))
		} else {
			r.offset(u)
		}
	case formStrp, formLineStrp, formSecOffset, formStrpSup, formGnuRefAlt, formGnuStrpAlt:
		r.offset(u)
	case formString:
		r.cstring()
	case formBlock1:
		r.skip(uint64(r.u8()))
	case formBlock2:
		r.skip(uint64(r.u16()))
	case formBlock4:
		r.skip(uint64(r.u32()))
	case formBlock, formExprloc:
		r.skip(r.uleb())
	case formIndirect:
		r.value(u, r.uleb())
	default:
		if r.err == nil {
			r.err = fmt.Errorf("unknown attribute form %#x", f)
		}
	}
}
