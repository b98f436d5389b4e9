package probes

import (
	"debug/dwarf"
	"encoding/binary"
	"fmt"
)

// A scan of .debug_info for the entries analysis looks up by name (the
// compile units' subprograms, struct and basic types: see indexDWARF).
// debug/dwarf decodes every attribute of every entry it passes, children
// included, and indexing a binary that way cost about a quarter of a new
// executable's analysis (bench/README §10). The scan decodes nothing but
// the three attributes the index reads of those entries (name, inline,
// abstract origin), and steps over everything else by its abbreviation's
// forms. It accepts exactly the forms debug/dwarf does; any other is an
// error, as it is there.

// indexDWARF indexes the compile units' subprograms, struct and basic
// types of d (whose .debug_info and .debug_abbrev are info and abbrev) by
// name: the first entry of a name wins, except that the out-of-line copy
// of an inlinable function, which has no name, is indexed under its
// abstract entry's (which omits unnamed results).
func indexDWARF(d *dwarf.Data, info, abbrev []byte) (map[string]dwarf.Offset, error) {
	x := newNameIndex()
	r := d.Reader()
	var entryErr error
	err := scanTopLevel(info, abbrev, indexedTags, func(e *topEntry) {
		if e.general && entryErr == nil {
			entryErr = decodeTop(r, e)
		}
		x.add(e)
	})
	if err == nil {
		err = entryErr
	}
	if err != nil {
		return nil, err
	}
	return x.done(), nil
}

// nameIndex builds indexDWARF's index from the entries in section order.
type nameIndex struct {
	idx      map[string]dwarf.Offset
	abstract map[dwarf.Offset]string
	concrete [][2]dwarf.Offset // an out-of-line copy, its abstract origin
}

func newNameIndex() *nameIndex {
	return &nameIndex{idx: map[string]dwarf.Offset{}, abstract: map[dwarf.Offset]string{}}
}

func (x *nameIndex) add(e *topEntry) {
	if e.named {
		if _, dup := x.idx[e.name]; !dup {
			x.idx[e.name] = e.off
		}
		if e.inline {
			x.abstract[e.off] = e.name
		}
	} else if e.ref && e.tag == dwarf.TagSubprogram {
		x.concrete = append(x.concrete, [2]dwarf.Offset{e.off, e.origin})
	}
}

func (x *nameIndex) done() map[string]dwarf.Offset {
	for _, c := range x.concrete {
		if n, ok := x.abstract[c[1]]; ok && x.idx[n] == c[1] {
			x.idx[n] = c[0]
		}
	}
	return x.idx
}

// indexedTags are the tags of the compile units' children indexDWARF
// indexes by name.
var indexedTags = map[dwarf.Tag]bool{dwarf.TagSubprogram: true, dwarf.TagStructType: true, dwarf.TagBaseType: true}

// decodeTop reads e's name, inline and abstract origin with debug/dwarf,
// for an entry whose forms the scan leaves to it.
func decodeTop(r *dwarf.Reader, e *topEntry) error {
	r.Seek(e.off)
	de, err := r.Next()
	if err != nil || de == nil {
		return fmt.Errorf("entry at %#x: %v", e.off, err)
	}
	*e = topOf(de)
	return nil
}

// topOf is what the index reads of an entry debug/dwarf decoded.
func topOf(de *dwarf.Entry) topEntry {
	e := topEntry{off: de.Offset, tag: de.Tag}
	e.name, e.named = de.Val(dwarf.AttrName).(string)
	_, e.inline = de.Val(dwarf.AttrInline).(int64)
	e.origin, e.ref = de.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset)
	return e
}

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
	formGnuRefAlt     = 0x1f20
	formGnuStrpAlt    = 0x1f21
)

// scanAbbrev is one abbreviation: its tag, whether entries of it have
// children, and their attributes and forms in order.
type scanAbbrev struct {
	tag      dwarf.Tag
	children bool
	attrs    []dwarf.Attr
	forms    []uint64
	// fixed is the size of an entry's attributes when every form has a
	// fixed size in the units the table was read for, else -1.
	fixed int
}

// topEntry is what the index reads of a compile unit's child: the values
// debug/dwarf's Entry.Val gives for its name (a string), inline (an int64)
// and abstract origin (an Offset). A name of another form than an inline
// string (Go's) is left to debug/dwarf: general is then set.
type topEntry struct {
	off, origin        dwarf.Offset
	tag                dwarf.Tag
	name               string
	named, inline, ref bool
	general            bool
}

// scanUnit is one unit's header as the scan needs it.
type scanUnit struct {
	base     uint64 // the unit's header, where its references count from
	dwarf64  bool
	version  uint16
	addrSize int
	abbrevs  abbrevTable
}

// dieScan reads entries of a .debug_info section.
type dieScan struct {
	info, abbrev []byte
	// tables caches the abbreviation tables by offset and unit format:
	// Go's linker gives every unit the same one.
	tables map[tableKey]abbrevTable
}

// scanTopLevel calls found with every direct child of a compile unit whose
// tag is in tags, in section order.
func scanTopLevel(info, abbrev []byte, tags map[dwarf.Tag]bool, found func(*topEntry)) error {
	s := &dieScan{info: info, abbrev: abbrev, tables: map[tableKey]abbrevTable{}}
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
func (s *dieScan) unit(off uint64, tags map[dwarf.Tag]bool, found func(*topEntry)) (uint64, error) {
	r := &scanReader{b: s.info, at: off}
	u := &scanUnit{base: off}
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
	if u.abbrevs, err = s.table(abbrevOff, u); err != nil {
		return 0, err
	}
	// The unit's entry: a compile unit's children are what is indexed;
	// any other unit is passed over whole, as readDWARF does.
	a, err := r.entry(u, nil)
	if err != nil || a == nil {
		return end, err
	}
	if a.tag != dwarf.TagCompileUnit || !a.children {
		return end, nil
	}
	var e topEntry
	for r.at < end {
		e = topEntry{off: dwarf.Offset(r.at)}
		a, err := r.entry(u, func(a *scanAbbrev) *topEntry {
			if tags[a.tag] {
				return &e
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		if a == nil {
			// The end of the compile unit's children. debug/dwarf reads
			// on to the unit's end, and so does the index.
			continue
		}
		if tags[a.tag] {
			e.tag = a.tag
			found(&e)
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
func (s *dieScan) table(off uint64, u *scanUnit) (abbrevTable, error) {
	key := tableKey{off, u.dwarf64, u.version, u.addrSize}
	if t, ok := s.tables[key]; ok {
		return t, nil
	}
	if off >= uint64(len(s.abbrev)) {
		return abbrevTable{}, fmt.Errorf("abbreviation table at %#x past .debug_abbrev's end", off)
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
			a.attrs = append(a.attrs, dwarf.Attr(attr))
			a.forms = append(a.forms, form)
		}
		for _, f := range a.forms {
			n := fixedSize(u, f)
			if n < 0 {
				a.fixed = -1
				break
			}
			a.fixed += n
		}
		t[code] = a
	}
	if r.err != nil {
		return abbrevTable{}, fmt.Errorf("abbreviation table at %#x: %w", off, r.err)
	}
	tab := abbrevTable{byCode: t}
	if len(t) < 1<<12 {
		// Codes count from 1: a table of them spares hashing one per entry.
		tab.dense = make([]*scanAbbrev, len(t)+1)
		for c, a := range t {
			if c >= uint64(len(tab.dense)) {
				tab.dense = nil
				break
			}
			tab.dense[c] = a
		}
	}
	s.tables[key] = tab
	return tab, nil
}

// tableKey names an abbreviation table as read for units of one format.
type tableKey struct {
	off      uint64
	dwarf64  bool
	version  uint16
	addrSize int
}

// fixedSize is the size of a value of form f in unit u, -1 when it varies.
func fixedSize(u *scanUnit, f uint64) int {
	offset := 4
	if u.dwarf64 {
		offset = 8
	}
	switch f {
	case formFlagPresent, formImplicitConst:
		return 0
	case formData1, formRef1, formFlag, formStrx1, formAddrx1:
		return 1
	case formData2, formRef2, formStrx2, formAddrx2:
		return 2
	case formStrx3, formAddrx3:
		return 3
	case formData4, formRef4, formRefSup4, formStrx4, formAddrx4:
		return 4
	case formData8, formRef8, formRefSig8, formRefSup8:
		return 8
	case formData16:
		return 16
	case formAddr:
		return u.addrSize
	case formRefAddr:
		if u.version == 2 {
			return u.addrSize
		}
		return offset
	case formStrp, formLineStrp, formSecOffset, formStrpSup, formGnuRefAlt, formGnuStrpAlt:
		return offset
	}
	return -1
}

// abbrevTable is one abbreviation table: by code, and, when the codes are
// 1 to n (as compilers number them), as a slice.
type abbrevTable struct {
	byCode map[uint64]*scanAbbrev
	dense  []*scanAbbrev
}

func (t abbrevTable) get(code uint64) *scanAbbrev {
	if t.dense != nil {
		if code < uint64(len(t.dense)) {
			return t.dense[code]
		}
		return nil
	}
	return t.byCode[code]
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
// for the null entry that ends a list of children. If keep (when not nil)
// returns an entry for the abbreviation, the entry's name, inline and
// abstract origin go there.
func (r *scanReader) entry(u *scanUnit, keep func(*scanAbbrev) *topEntry) (*scanAbbrev, error) {
	at := r.at
	code := r.uleb()
	if r.err != nil {
		return nil, r.err
	}
	if code == 0 {
		return nil, nil
	}
	a := u.abbrevs.get(code)
	if a == nil {
		return nil, fmt.Errorf("entry at %#x: unknown abbreviation %d", at, code)
	}
	var e *topEntry
	if keep != nil {
		e = keep(a)
	}
	if e == nil && a.fixed >= 0 {
		r.skip(uint64(a.fixed))
		if r.err != nil {
			return nil, fmt.Errorf("entry at %#x: %w", at, r.err)
		}
		return a, nil
	}
	// Entry.Val gives an attribute's first value.
	var name, inline, origin bool
	for i, f := range a.forms {
		switch {
		case e == nil:
		case a.attrs[i] == dwarf.AttrName && !name:
			name = true
			if f == formString {
				start := r.at
				r.cstring()
				if r.err == nil {
					e.name, e.named = string(r.b[start:r.at-1]), true
				}
				continue
			}
			e.general = true
		case a.attrs[i] == dwarf.AttrInline && !inline:
			inline = true
			switch f {
			case formData1, formData2, formData4, formData8, formSdata, formUdata, formImplicitConst:
				e.inline = true
			}
		case a.attrs[i] == dwarf.AttrAbstractOrigin && !origin:
			origin = true
			if f == formRefAddr && u.version == 2 {
				e.general = true // an address-sized reference
			} else if v, ok := r.ref(u, f); ok {
				e.origin, e.ref = v, true
				continue
			}
		}
		r.value(u, f)
	}
	if r.err != nil {
		return nil, fmt.Errorf("entry at %#x: %w", at, r.err)
	}
	return a, nil
}

// ref reads a reference of form f as debug/dwarf gives it, an Offset in
// .debug_info; false, having read nothing, for a form that is not one.
func (r *scanReader) ref(u *scanUnit, f uint64) (dwarf.Offset, bool) {
	var v uint64
	switch f {
	case formRef1:
		v = uint64(r.u8()) + u.base
	case formRef2:
		v = uint64(r.u16()) + u.base
	case formRef4:
		v = uint64(r.u32()) + u.base
	case formRef8:
		v = r.u64() + u.base
	case formRefUdata:
		v = r.uleb() + u.base
	case formRefAddr: // (DWARF 3 and later)
		v = r.offset(u)
	default:
		return 0, false
	}
	return dwarf.Offset(v), true
}

// subtree steps over the children of the entry just read, and theirs.
func (r *scanReader) subtree(u *scanUnit) error {
	for depth := 1; depth > 0; {
		a, err := r.entry(u, nil)
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
	if n := fixedSize(u, f); n >= 0 {
		r.skip(uint64(n))
		return
	}
	switch f {
	case formUdata, formRefUdata, formStrx, formAddrx, formLoclistx, formRnglistx:
		r.uleb()
	case formSdata:
		r.sleb()
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
