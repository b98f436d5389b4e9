package probes

import (
	"debug/dwarf"
	"fmt"
	"go/ast"
	"go/parser"
	"strings"
)

// ValueKind is how a parameter's value can be captured.
type ValueKind int

// Value kinds.
const (
	KindOther ValueKind = iota // laid out, not capturable
	KindInt
	KindUint
	KindBool
	KindString
	KindError   // the error interface
	KindPointer // captured as uint
)

func (k ValueKind) String() string {
	return [...]string{"other", "int", "uint", "bool", "string", "error", "pointer"}[k]
}

// Param is one argument or result and where the register ABI puts it.
type Param struct {
	Name string
	Type string
	Kind ValueKind
	// Size in bytes for integers (sign and zero extension on capture).
	Size int
	// Regs are the integer registers holding it, in ABI order numbering
	// (0=RAX … 8=R11); nil when it is passed on the stack or has no
	// integer part.
	Regs    []uint8
	OnStack bool
}

// Signature is a function's parameters laid out under the ABI.
type Signature struct {
	Params, Results []Param
}

const intRegs, floatRegs = 9, 15

// shape is a type's register components: 'i' integer, 'f' float; ok=false
// when the type can never be register-assigned (arrays of 2+ elements).
type shape struct {
	parts []byte
	ok    bool
}

func layout(ps []Param, shapes []shape) {
	ni, nf := 0, 0
	for i := range ps {
		s := shapes[i]
		ci, cf := 0, 0
		for _, p := range s.parts {
			if p == 'i' {
				ci++
			} else {
				cf++
			}
		}
		if !s.ok || ni+ci > intRegs || nf+cf > floatRegs {
			ps[i].OnStack = true
			continue
		}
		for j := 0; j < ci; j++ {
			ps[i].Regs = append(ps[i].Regs, uint8(ni+j))
		}
		ni += ci
		nf += cf
	}
}

// SignatureFromDWARF lays out fn's parameters from the binary's DWARF. It
// returns nil, nil when the binary has no DWARF for fn.
func (b *Binary) SignatureFromDWARF(fn string) (*Signature, error) {
	r, e, err := b.dwarfEntry(fn)
	if err != nil || e == nil {
		return nil, err
	}
	if e.Tag != dwarf.TagSubprogram {
		return nil, nil
	}
	var sig Signature
	var pshapes, rshapes []shape
	seen := map[string]bool{}
	for e.Children {
		c, err := r.Next()
		if err != nil {
			return nil, fmt.Errorf("read DWARF of %s: %w", fn, err)
		}
		if c == nil || c.Tag == 0 {
			break
		}
		if c.Tag != dwarf.TagFormalParameter {
			if c.Children {
				r.SkipChildren()
			}
			continue
		}
		off, ok := c.Val(dwarf.AttrType).(dwarf.Offset)
		if !ok {
			return nil, fmt.Errorf("DWARF of %s: parameter without type", fn)
		}
		t, err := b.dwarf.Type(off)
		if err != nil {
			return nil, fmt.Errorf("DWARF of %s: %w", fn, err)
		}
		name, _ := c.Val(dwarf.AttrName).(string)
		// Functions with defer list their results twice (register and
		// stack homes); the first is the one the ABI assigns.
		if seen[name] {
			continue
		}
		seen[name] = true
		p := Param{Name: name, Type: dwarfTypeName(t)}
		p.Kind, p.Size = dwarfKind(t)
		sh := dwarfShape(t)
		if isResult, _ := c.Val(dwarf.AttrVarParam).(bool); isResult {
			sig.Results = append(sig.Results, p)
			rshapes = append(rshapes, sh)
		} else {
			sig.Params = append(sig.Params, p)
			pshapes = append(pshapes, sh)
		}
	}
	layout(sig.Params, pshapes)
	layout(sig.Results, rshapes)
	return &sig, nil
}

func dwarfTypeName(t dwarf.Type) string {
	if st, ok := t.(*dwarf.StructType); ok {
		return st.StructName
	}
	return t.String()
}

func dwarfKind(t dwarf.Type) (ValueKind, int) {
	switch t := t.(type) {
	case *dwarf.BoolType:
		return KindBool, int(t.ByteSize)
	case *dwarf.IntType:
		return KindInt, int(t.ByteSize)
	case *dwarf.UintType:
		return KindUint, int(t.ByteSize)
	case *dwarf.CharType:
		return KindInt, int(t.ByteSize)
	case *dwarf.UcharType:
		return KindUint, int(t.ByteSize)
	case *dwarf.PtrType:
		return KindPointer, 8
	case *dwarf.StructType:
		if t.StructName == "string" {
			return KindString, 16
		}
	case *dwarf.TypedefType:
		if t.Name == "error" {
			return KindError, 16
		}
		// Named types over basic ones (type ID int64) capture as the basic.
		if k, sz := dwarfKind(t.Type); k != KindError {
			return k, sz
		}
	}
	return KindOther, 0
}

func dwarfShape(t dwarf.Type) shape {
	switch t := t.(type) {
	case *dwarf.BoolType, *dwarf.IntType, *dwarf.UintType, *dwarf.CharType, *dwarf.UcharType, *dwarf.PtrType, *dwarf.FuncType:
		return shape{[]byte{'i'}, true}
	case *dwarf.FloatType:
		return shape{[]byte{'f'}, true}
	case *dwarf.ComplexType:
		return shape{[]byte{'f', 'f'}, true}
	case *dwarf.TypedefType:
		return dwarfShape(t.Type)
	case *dwarf.StructType:
		s := shape{ok: true}
		for _, f := range t.Field {
			fs := dwarfShape(f.Type)
			if !fs.ok {
				return shape{}
			}
			s.parts = append(s.parts, fs.parts...)
		}
		return s
	case *dwarf.ArrayType:
		switch t.Count {
		case 0:
			return shape{ok: true}
		case 1:
			return dwarfShape(t.Type)
		}
		return shape{}
	}
	return shape{}
}

// ParseSignature lays out a Go function type written as source, e.g.
// "func(s *Store, key string) (string, error)", for binaries without DWARF.
// A method's receiver is written as the first parameter. Only types whose
// layout the text alone determines are accepted: basic types, pointers,
// slices, maps, channels, functions and interfaces.
func ParseSignature(src string) (*Signature, error) {
	expr, err := parser.ParseExpr(src)
	if err != nil {
		return nil, fmt.Errorf("signature %q: %w", src, err)
	}
	ft, ok := expr.(*ast.FuncType)
	if !ok {
		return nil, fmt.Errorf("signature %q: want a function type such as func(a int) error", src)
	}
	var sig Signature
	var pshapes, rshapes []shape
	conv := func(fl *ast.FieldList, out *[]Param, shapes *[]shape, prefix string) error {
		if fl == nil {
			return nil
		}
		for _, f := range fl.List {
			typ := exprString(f.Type)
			k, size, sh, err := sourceType(f.Type)
			if err != nil {
				return fmt.Errorf("signature %q: %w", src, err)
			}
			names := f.Names
			if len(names) == 0 {
				names = []*ast.Ident{{Name: fmt.Sprintf("%s%d", prefix, len(*out))}}
			}
			for _, n := range names {
				*out = append(*out, Param{Name: n.Name, Type: typ, Kind: k, Size: size})
				*shapes = append(*shapes, sh)
			}
		}
		return nil
	}
	if err := conv(ft.Params, &sig.Params, &pshapes, "arg"); err != nil {
		return nil, err
	}
	if err := conv(ft.Results, &sig.Results, &rshapes, "~r"); err != nil {
		return nil, err
	}
	layout(sig.Params, pshapes)
	layout(sig.Results, rshapes)
	return &sig, nil
}

func exprString(e ast.Expr) string {
	var sb strings.Builder
	var walk func(ast.Expr)
	walk = func(e ast.Expr) {
		switch e := e.(type) {
		case *ast.Ident:
			sb.WriteString(e.Name)
		case *ast.StarExpr:
			sb.WriteString("*")
			walk(e.X)
		case *ast.SelectorExpr:
			walk(e.X)
			sb.WriteString("." + e.Sel.Name)
		case *ast.ArrayType:
			sb.WriteString("[]")
			walk(e.Elt)
		case *ast.MapType:
			sb.WriteString("map[")
			walk(e.Key)
			sb.WriteString("]")
			walk(e.Value)
		case *ast.Ellipsis:
			sb.WriteString("...")
			walk(e.Elt)
		default:
			fmt.Fprintf(&sb, "%T", e)
		}
	}
	walk(e)
	return sb.String()
}

var basicSizes = map[string]struct {
	kind ValueKind
	size int
}{
	"int": {KindInt, 8}, "int8": {KindInt, 1}, "int16": {KindInt, 2}, "int32": {KindInt, 4}, "int64": {KindInt, 8}, "rune": {KindInt, 4},
	"uint": {KindUint, 8}, "uint8": {KindUint, 1}, "uint16": {KindUint, 2}, "uint32": {KindUint, 4}, "uint64": {KindUint, 8},
	"uintptr": {KindUint, 8}, "byte": {KindUint, 1}, "bool": {KindBool, 1},
}

func sourceType(e ast.Expr) (ValueKind, int, shape, error) {
	one := shape{[]byte{'i'}, true}
	switch e := e.(type) {
	case *ast.Ident:
		if b, ok := basicSizes[e.Name]; ok {
			return b.kind, b.size, one, nil
		}
		switch e.Name {
		case "string":
			return KindString, 16, shape{[]byte{'i', 'i'}, true}, nil
		case "error":
			return KindError, 16, shape{[]byte{'i', 'i'}, true}, nil
		case "any":
			return KindOther, 16, shape{[]byte{'i', 'i'}, true}, nil
		case "float32", "float64":
			return KindOther, 8, shape{[]byte{'f'}, true}, nil
		case "complex64", "complex128":
			return KindOther, 16, shape{[]byte{'f', 'f'}, true}, nil
		}
	case *ast.StarExpr, *ast.MapType, *ast.ChanType, *ast.FuncType:
		return KindPointer, 8, one, nil
	case *ast.ArrayType:
		if e.Len == nil {
			return KindOther, 24, shape{[]byte{'i', 'i', 'i'}, true}, nil
		}
	case *ast.Ellipsis:
		return KindOther, 24, shape{[]byte{'i', 'i', 'i'}, true}, nil
	case *ast.InterfaceType:
		return KindOther, 16, shape{[]byte{'i', 'i'}, true}, nil
	}
	return 0, 0, shape{}, fmt.Errorf("cannot lay out type %s without DWARF: write a pointer, a basic type, a slice, a map, a channel, a function or an interface", exprString(e))
}
