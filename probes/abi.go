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
	// (amd64: 0=RAX … 8=R11; arm64: 0=R0 … 15=R15); nil when it is passed
	// on the stack or has no integer part.
	Regs    []uint8
	OnStack bool
}

// Signature is a function's parameters laid out under the ABI.
type Signature struct {
	// Params and Results are numbered as the user writes them: a method's
	// receiver is Params[0]; a generic function's dictionary is in
	// neither.
	Params, Results []Param
	// Dict is, for a shape instantiation of a generic function, the hidden
	// dictionary pointer the ABI passes after the receiver (first for a
	// function): it takes a register, but no argument number.
	Dict *Param
	// ResultsUnknown: the DWARF found describes the parameters but perhaps
	// not every result (only the abstract entry of an inlinable function,
	// which leaves out unnamed results).
	ResultsUnknown bool
}

// Generic reports whether the function is a shape instantiation of a
// generic function.
func (s *Signature) Generic() bool { return s.Dict != nil }

// shape is a type's register components: 'i' integer, 'f' float; ok=false
// when the type can never be register-assigned (arrays of 2+ elements).
type shape struct {
	parts []byte
	ok    bool
}

// layout assigns ps to a's registers as Go's register ABI does, in order,
// each wholly in registers or wholly on the stack.
func layout(a Arch, ps []Param, shapes []shape) {
	intRegs, floatRegs := a.regs()
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

// layoutDict lays out ps with a dictionary pointer inserted at index at
// (none when at < 0) and returns them without it, and the dictionary.
func layoutDict(a Arch, ps []Param, shapes []shape, at int) ([]Param, *Param) {
	if at < 0 {
		layout(a, ps, shapes)
		return ps, nil
	}
	all := append(append(append([]Param{}, ps[:at]...), Param{Name: dictParam, Type: "*dictionary", Kind: KindPointer, Size: 8}), ps[at:]...)
	allShapes := append(append(append([]shape{}, shapes[:at]...), shape{[]byte{'i'}, true}), shapes[at:]...)
	layout(a, all, allShapes)
	d := all[at]
	return append(all[:at], all[at+1:]...), &d
}

// SignatureFromDWARF lays out fn's parameters from the binary's DWARF. It
// returns nil, nil when the binary has no DWARF for fn. For a shape
// instantiation the dictionary is placed where the ABI passes it, whether
// the DWARF lists it (Go 1.27) or not (Go 1.26 and older).
func (b *Binary) SignatureFromDWARF(fn string) (*Signature, error) {
	d, r, e, err := b.dwarfEntry(fn)
	if err != nil || e == nil {
		return nil, err
	}
	if e.Tag != dwarf.TagSubprogram {
		return nil, nil
	}
	var sig Signature
	// The index gives the out-of-line copy of an inlinable function when
	// there is one; its abstract entry alone omits unnamed results.
	_, sig.ResultsUnknown = e.Val(dwarf.AttrInline).(int64)
	var pshapes, rshapes []shape
	seen := map[string]bool{}
	dictAt := -1
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
		// A parameter of the out-of-line copy of an inlinable function
		// may only point at its abstract entry.
		if ao, ok := c.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset); ok {
			ar := d.Reader()
			ar.Seek(ao)
			if c, err = ar.Next(); err != nil || c == nil {
				return nil, fmt.Errorf("DWARF of %s: parameter's abstract origin: %v", fn, err)
			}
		}
		off, ok := c.Val(dwarf.AttrType).(dwarf.Offset)
		if !ok {
			return nil, fmt.Errorf("DWARF of %s: parameter without type", fn)
		}
		t, err := d.Type(off)
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
		isResult, _ := c.Val(dwarf.AttrVarParam).(bool)
		if name == dictParam && !isResult {
			dictAt = len(sig.Params)
			continue
		}
		p := Param{Name: name, Type: dwarfTypeName(t)}
		p.Kind, p.Size = dwarfKind(t)
		sh := dwarfShape(t)
		if isResult {
			sig.Results = append(sig.Results, p)
			rshapes = append(rshapes, sh)
		} else {
			sig.Params = append(sig.Params, p)
			pshapes = append(pshapes, sh)
		}
	}
	byName := dictIndex(fn)
	switch {
	case dictAt < 0:
		dictAt = byName
	case byName >= 0 && byName != dictAt:
		return nil, fmt.Errorf("DWARF of %s lists its dictionary as parameter %d, where the ABI passes parameter %d: unsupported", fn, dictAt, byName)
	}
	if dictAt > len(sig.Params) {
		return nil, fmt.Errorf("DWARF of %s: a method of a generic type without its receiver: unsupported", fn)
	}
	sig.Params, sig.Dict = layoutDict(b.Arch, sig.Params, pshapes, dictAt)
	layout(b.Arch, sig.Results, rshapes)
	return &sig, nil
}

func dwarfTypeName(t dwarf.Type) string {
	// A shape instantiation types its shaped parameters .param0, .param1…
	// (typedefs the dictionary resolves at run time): show the shape.
	if td, ok := t.(*dwarf.TypedefType); ok && strings.HasPrefix(td.Name, ".") {
		return dwarfTypeName(td.Type)
	}
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
	case *dwarf.PtrType, *dwarf.FuncType:
		return KindPointer, 8
	case *dwarf.StructType:
		if t.StructName == "string" || t.StructName == shapePrefix+"string" {
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
// "func(s *Store, key string) (string, error)", for binaries of a without
// DWARF.
// A method's receiver is written as the first parameter. Only types whose
// layout the text alone determines are accepted: basic types, pointers,
// slices, maps, channels, functions and interfaces.
func ParseSignature(a Arch, src string) (*Signature, error) { return parseSignature(a, src, -1) }

// SignatureFor lays out the signature a user wrote for the function an a
// binary names fn: for a shape instantiation of a generic function (the
// signature written as the user instantiates it, func(key string, v int)
// for F[int]) the hidden dictionary is placed where the ABI passes it.
func SignatureFor(a Arch, fn, src string) (*Signature, error) {
	return parseSignature(a, src, dictIndex(fn))
}

func parseSignature(a Arch, src string, dictAt int) (*Signature, error) {
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
	if dictAt > len(sig.Params) {
		return nil, fmt.Errorf("signature %q: the function is a method of a generic type: write its receiver as the first parameter", src)
	}
	sig.Params, sig.Dict = layoutDict(a, sig.Params, pshapes, dictAt)
	layout(a, sig.Results, rshapes)
	return &sig, nil
}

// String writes the signature as the user numbers it (no dictionary).
func (s *Signature) String() string {
	part := func(ps []Param) string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Name+" "+p.Type)
		}
		return strings.Join(out, ", ")
	}
	return "func(" + part(s.Params) + ") (" + part(s.Results) + ")"
}

// chooseSignature decides how fn is laid out from its DWARF (dw, nil when
// there is none) and the signature the user wrote (user, nil when none):
//   - DWARF that describes the whole function wins; a signature given as
//     well must agree with it, register for register, or it is an error
//     (one of the two is wrong, and a wrong layout exports wrong data);
//   - DWARF that may omit results (an inlinable function's abstract entry
//     only) gives way to the signature, whose arguments must agree with it;
//     without a signature its results are unknown;
//   - without DWARF, the signature.
func chooseSignature(fn string, dw, user *Signature) (*Signature, error) {
	switch {
	case dw == nil:
		return user, nil
	case user == nil:
		return dw, nil
	}
	if msg := disagreement(dw.Params, user.Params, "arg", "arguments"); msg != "" {
		return nil, fmt.Errorf("%s: signature disagrees with the binary's DWARF, %s: %s; fix or remove `signature:`", fn, dw, msg)
	}
	if dw.ResultsUnknown {
		return user, nil
	}
	if msg := disagreement(dw.Results, user.Results, "result", "results"); msg != "" {
		return nil, fmt.Errorf("%s: signature disagrees with the binary's DWARF, %s: %s; fix or remove `signature:`", fn, dw, msg)
	}
	return dw, nil
}

// disagreement says how two layouts of the same parameters differ, "" when
// they do not.
func disagreement(dw, user []Param, prefix, plural string) string {
	if len(dw) != len(user) {
		return fmt.Sprintf("%d %s in the signature, %d in DWARF", len(user), plural, len(dw))
	}
	for i := range dw {
		d, u := dw[i], user[i]
		same := d.OnStack == u.OnStack && fmt.Sprint(d.Regs) == fmt.Sprint(u.Regs)
		switch {
		case d.Kind == u.Kind:
			same = same && (d.Kind == KindOther || d.Size == u.Size)
		case d.Kind == KindPointer && u.Kind == KindUint, d.Kind == KindUint && u.Kind == KindPointer:
			same = same && d.Size == u.Size
		default:
			same = false
		}
		if !same {
			return fmt.Sprintf("%s%d is %s in the signature, %s in DWARF", prefix, i, u.Type, d.Type)
		}
	}
	return ""
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
		case *ast.IndexExpr:
			walk(e.X)
			sb.WriteString("[")
			walk(e.Index)
			sb.WriteString("]")
		case *ast.IndexListExpr:
			walk(e.X)
			for i, ix := range e.Indices {
				sb.WriteString(map[bool]string{true: "[", false: ", "}[i == 0])
				walk(ix)
			}
			sb.WriteString("]")
		case *ast.ChanType:
			sb.WriteString("chan ")
			walk(e.Value)
		case *ast.FuncType:
			sb.WriteString("func(…)")
		case *ast.InterfaceType:
			sb.WriteString("interface{…}")
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
