package probes

import (
	"debug/dwarf"
	"reflect"
	"strings"
	"testing"
)

// TestDWARFIndex: the index readDWARF builds from the sections it reads and
// its scan of .debug_info is the index debug/dwarf gives walking the whole
// DWARF as elf reads it (every section, every entry decoded), and a field
// offset read through either is the same, for the oldest and newest Go
// releases supported (DWARF 4 and 5), PIE or not. The program uses
// net/http, as the built-in sets read it.
func TestDWARFIndex(t *testing.T) {
	for _, build := range []struct {
		toolchain string
		args      []string
	}{{"go1.19.13", nil}, {"go1.22.12", []string{"-buildmode=pie"}}, {"go1.26.8", nil}, {"go1.27.3", []string{"-buildmode=pie"}}} {
		t.Run(build.toolchain, func(t *testing.T) {
			b, err := Open(program(t, "compact", compactSrc, build.toolchain, build.args...))
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			dw, err := b.dwarfData()
			if err != nil || dw == nil {
				t.Fatalf("DWARF: %v", err)
			}
			full, err := b.f.DWARF()
			if err != nil {
				t.Fatal(err)
			}
			want, err := walkIndex(full)
			if err != nil {
				t.Fatal(err)
			}
			if len(want) < 1000 {
				t.Fatalf("the whole walk indexed %d names: not a Go binary's DWARF", len(want))
			}
			if !reflect.DeepEqual(dw.idx, want) {
				for n, off := range want {
					if dw.idx[n] != off {
						t.Errorf("%s: at %#x, want %#x", n, dw.idx[n], off)
					}
				}
				for n := range dw.idx {
					if _, ok := want[n]; !ok {
						t.Errorf("%s indexed, not by the whole walk", n)
					}
				}
			}
			for _, f := range [][2]string{{"runtime.g", "goid"}, {"runtime.stack", "hi"}, {"net/http.Request", "Method"}, {"net/http.Request", "URL"}, {"net/url.URL", "Path"}} {
				got, ok, err := b.dwarfField(f[0], f[1])
				if err != nil || !ok {
					t.Fatalf("%s.%s: %v %v", f[0], f[1], ok, err)
				}
				if w := fieldFrom(t, full, want[f[0]], f[1]); got != w {
					t.Errorf("%s.%s at %d, the whole DWARF says %d", f[0], f[1], got, w)
				}
			}
			if _, err := b.SignatureFromDWARF("main.handle"); err != nil {
				t.Errorf("signature of main.handle: %v", err)
			}
		})
	}
}

// walkIndex is indexDWARF's index as debug/dwarf alone gives it: every
// entry read, the compile units' children indexed.
func walkIndex(d *dwarf.Data) (map[string]dwarf.Offset, error) {
	x := newNameIndex()
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			return nil, err
		}
		if e == nil {
			return x.done(), nil
		}
		if e.Tag == dwarf.TagCompileUnit {
			continue
		}
		if indexedTags[e.Tag] {
			top := topOf(e)
			x.add(&top)
		}
		if e.Children {
			r.SkipChildren()
		}
	}
}

// fieldFrom reads the offset of field in the struct at off of d.
func fieldFrom(t *testing.T, d *dwarf.Data, off dwarf.Offset, field string) int64 {
	t.Helper()
	typ, err := d.Type(off)
	if err != nil {
		t.Fatal(err)
	}
	st, ok := typ.(*dwarf.StructType)
	if !ok {
		t.Fatalf("%s is a %T", typ, typ)
	}
	for _, f := range st.Field {
		if f.Name == field {
			return f.ByteOffset
		}
	}
	t.Fatalf("%s has no %s", typ, field)
	return 0
}

// TestScanErrors: a .debug_info the scan cannot step through is an error
// naming where, not a shorter index.
func TestScanErrors(t *testing.T) {
	// One abbreviation: 1, a compile unit with children and one
	// attribute (DW_AT_name) of the form given.
	abbrev := func(form byte) []byte { return []byte{1, 0x11, 1, 0x03, form, 0, 0, 0} }
	// A DWARF 4 unit: length, version, abbrev offset, address size, then
	// the entries.
	unit := func(entries ...byte) []byte {
		body := append([]byte{4, 0, 0, 0, 0, 0, 8}, entries...)
		n := len(body)
		return append([]byte{byte(n), byte(n >> 8), 0, 0}, body...)
	}
	noop := func(*topEntry) {}
	for _, c := range []struct {
		name         string
		info, abbrev []byte
		want         string
	}{
		{"unknown form", unit(1, 0, 0), abbrev(0x7f), "unknown attribute form 0x7f"},
		{"unknown abbreviation", unit(2, 0), abbrev(0x08), "unknown abbreviation 2"},
		{"string without end", unit(1, 'a', 'b'), abbrev(0x08), "without its end"},
		{"unit past the end", unit(1, 'a', 0, 0)[:8], abbrev(0x08), "past the section's end"},
		{"DWARF version 9", []byte{3, 0, 0, 0, 9, 0, 0}, abbrev(0x08), "DWARF version 9"},
	} {
		err := scanTopLevel(c.info, c.abbrev, indexedTags, noop)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	// And the well-formed unit scans.
	if err := scanTopLevel(unit(1, 'a', 0, 0), abbrev(0x08), indexedTags, noop); err != nil {
		t.Errorf("well-formed: %v", err)
	}
}

// TestIndexForms: the index of a DWARF 4 unit written here, whose struct's
// name is in .debug_str (as C compilers write it), left to debug/dwarf,
// whose inlinable function has an out-of-line copy, and which has entries
// after a stray null entry, is the whole walk's.
func TestIndexForms(t *testing.T) {
	abbrev := []byte{
		1, 0x11, 1, 0x03, 0x08, 0, 0, // compile unit: name (string)
		2, 0x13, 0, 0x03, 0x0e, 0x0b, 0x0b, 0, 0, // struct: name (strp), byte size (data1)
		3, 0x2e, 1, 0x03, 0x08, 0x20, 0x0b, 0, 0, // subprogram: name, inline (data1)
		4, 0x2e, 0, 0x31, 0x13, 0, 0, // subprogram: abstract origin (ref4)
		5, 0x05, 0, 0x03, 0x08, 0, 0, // formal parameter: name
		6, 0x24, 0, 0x03, 0x08, 0, 0, // base type: name
		0,
	}
	str := []byte("junk\x00S\x00")
	var info []byte
	at := map[string]int{}
	add := func(name string, b ...byte) {
		if name != "" {
			at[name] = 11 + len(info)
		}
		info = append(info, b...)
	}
	add("", 1, 'c', 'u', 0)
	add("S", 2, 5, 0, 0, 0, 16)
	add("f", 3, 'f', 0, 1)
	add("", 5, 'f', 0, 0) // a parameter named as the function: not indexed
	add("", 0)            // a null entry too many: debug/dwarf reads on
	add("copy", 4, byte(at["f"]), 0, 0, 0)
	add("int", 6, 'i', 'n', 't', 0)
	add("", 0)
	n := 7 + len(info)
	info = append([]byte{byte(n), 0, 0, 0, 4, 0, 0, 0, 0, 0, 8}, info...)
	d, err := dwarf.New(abbrev, nil, nil, info, nil, nil, nil, str)
	if err != nil {
		t.Fatal(err)
	}
	got, err := indexDWARF(d, info, abbrev)
	if err != nil {
		t.Fatal(err)
	}
	want, err := walkIndex(d)
	if err != nil {
		t.Fatal(err)
	}
	exact := map[string]dwarf.Offset{"S": dwarf.Offset(at["S"]), "f": dwarf.Offset(at["copy"]), "int": dwarf.Offset(at["int"])}
	if !reflect.DeepEqual(want, exact) {
		t.Fatalf("the whole walk: %v, want %v (the unit is not as written)", want, exact)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("index %v, want %v", got, want)
	}
}
