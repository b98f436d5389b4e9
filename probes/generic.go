package probes

import (
	"debug/dwarf"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Go compiles a generic function once per GC shape of its type arguments
// (all pointers share one shape, other types go by their underlying type)
// and names each copy by its shapes: pkg.F[go.shape.int],
// pkg.(*List[go.shape.string]).Push. A shape instantiation takes a hidden
// dictionary pointer: the first parameter after the receiver, so the first
// register of a function and the second of a method (the receiver keeps
// the first). DWARF by Go 1.26 and older does not list it at all; Go 1.27
// lists it as a parameter named .dict.

const shapePrefix = "go.shape."

// dictParam is the name DWARF gives the dictionary parameter.
const dictParam = ".dict"

// closureRE matches the last element of a closure's or wrapper's name
// (pkg.F[go.shape.int].func1, .gowrap2, .deferwrap1, M-fm): they get the
// dictionary through their closure, not as a parameter.
var closureRE = regexp.MustCompile(`^(func|gowrap|deferwrap)\d+$|-fm$`)

// splitQualified splits a function's name into its package path and the
// dot-separated elements after it, dots inside brackets and parentheses
// (type arguments, a pointer receiver) not counting:
// "a/b.(*T[go.shape.int]).M" gives "a/b" and ["(*T[go.shape.int])", "M"].
func splitQualified(name string) (pkg string, elems []string) {
	start := 0
	depth := 0
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '[', '(', '{':
			depth++
		case ']', ')', '}':
			depth--
		case '/':
			if depth == 0 {
				start = i + 1
			}
		}
	}
	dot := strings.IndexByte(name[start:], '.')
	if dot < 0 {
		return "", []string{name}
	}
	pkg = name[:start+dot]
	rest := name[start+dot+1:]
	depth = 0
	last := 0
	for i := 0; i < len(rest); i++ {
		switch rest[i] {
		case '[', '(', '{':
			depth++
		case ']', ')', '}':
			depth--
		case '.':
			if depth == 0 {
				elems = append(elems, rest[last:i])
				last = i + 1
			}
		}
	}
	return pkg, append(elems, rest[last:])
}

// typeArgs returns the type arguments in an element's brackets, in order
// (several groups for a generic method of a generic type), and the
// element without them.
func typeArgs(elem string) (args []string, bare string) {
	var sb strings.Builder
	depth := 0
	argStart := 0
	for i := 0; i < len(elem); i++ {
		c := elem[i]
		switch {
		case c == '[' && depth == 0:
			depth = 1
			argStart = i + 1
			continue
		case depth == 0:
			sb.WriteByte(c)
			continue
		case c == '[' || c == '(' || c == '{':
			depth++
		case c == ']' || c == ')' || c == '}':
			depth--
			if depth == 0 {
				args = append(args, strings.TrimSpace(elem[argStart:i]))
				continue
			}
		case c == ',' && depth == 1:
			args = append(args, strings.TrimSpace(elem[argStart:i]))
			argStart = i + 1
		}
	}
	return args, sb.String()
}

// dictIndex is, for a shape instantiation, where its dictionary sits among
// its parameters counting the receiver: 0 for a function, 1 for a method.
// It is -1 for every other function, closures inside generic functions
// included.
func dictIndex(name string) int {
	_, elems := splitQualified(name)
	if len(elems) == 0 || len(elems) > 2 || closureRE.MatchString(elems[len(elems)-1]) {
		return -1
	}
	shaped := false
	for _, e := range elems {
		args, _ := typeArgs(e)
		for _, a := range args {
			if strings.HasPrefix(a, shapePrefix) {
				shaped = true
			}
		}
	}
	switch {
	case !shaped:
		return -1
	case len(elems) == 2:
		return 1
	}
	return 0
}

// IsShapeInstantiation reports whether the binary's function name is a
// shape instantiation of a generic function, one that takes a hidden
// dictionary.
func IsShapeInstantiation(name string) bool { return dictIndex(name) >= 0 }

// skeleton is a name without its type arguments: the key under which a
// user's instantiation name and the binary's shape names meet.
func skeleton(name string) (string, []string) {
	pkg, elems := splitQualified(name)
	var all []string
	for i, e := range elems {
		args, bare := typeArgs(e)
		all = append(all, args...)
		elems[i] = bare
	}
	if pkg == "" {
		return strings.Join(elems, "."), all
	}
	return pkg + "." + strings.Join(elems, "."), all
}

// shapesOf returns the shapes a type argument, as a user writes it, can
// have; nil when its text alone does not tell (a named type, a struct).
func shapesOf(arg string) []string {
	switch arg {
	case "byte":
		return []string{shapePrefix + "uint8"}
	case "rune":
		return []string{shapePrefix + "int32"}
	case "any", "interface{}", "interface {}":
		return []string{shapePrefix + "interface {}"}
	case "error":
		return []string{shapePrefix + "interface { Error() string }"}
	}
	if strings.HasPrefix(arg, "*") {
		// All pointers share *uint8 unless the constraint has a core type.
		return []string{shapePrefix + "*uint8", shapePrefix + arg}
	}
	// Composites of predeclared types ([]int, map[string]int) are their
	// own underlying type; a dot or a brace means a named or literal type.
	if strings.ContainsAny(arg, ".{( ") {
		return nil
	}
	for _, w := range identRE.FindAllString(arg, -1) {
		if !predeclared[w] && w != "map" && w != "chan" {
			return nil
		}
	}
	return []string{shapePrefix + arg}
}

// attrGoKind is DW_AT_go_kind: the reflect.Kind Go records on each type.
const attrGoKind = dwarf.Attr(0x2900)

// kindShapes are the shapes of named types over basic ones, by their
// reflect.Kind.
var kindShapes = map[int64]string{
	1: "bool", 2: "int", 3: "int8", 4: "int16", 5: "int32", 6: "int64",
	7: "uint", 8: "uint8", 9: "uint16", 10: "uint32", 11: "uint64", 12: "uintptr",
	13: "float32", 14: "float64", 15: "complex64", 16: "complex128", 24: "string",
}

// namedShape returns the shape of a named type over a basic one
// (time.Duration: go.shape.int64) from the binary's DWARF; nil when it has
// none or the type is of another kind.
func (b *Binary) namedShape(typ string) []string {
	_, _, e, err := b.dwarfEntry(typ)
	if err != nil || e == nil || e.Tag == dwarf.TagSubprogram {
		return nil
	}
	k, _ := e.Val(attrGoKind).(int64)
	if s, ok := kindShapes[k]; ok {
		return []string{shapePrefix + s}
	}
	return nil
}

var identRE = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*`)

var predeclared = map[string]bool{
	"bool": true, "string": true, "int": true, "int8": true, "int16": true, "int32": true, "int64": true,
	"uint": true, "uint8": true, "uint16": true, "uint32": true, "uint64": true, "uintptr": true,
	"float32": true, "float64": true, "complex64": true, "complex128": true,
}

// Lookup finds the function a probe names: the binary's own name (shape
// instantiations included, pkg.F[go.shape.int]), or a generic function as
// the user instantiates it (pkg.F[int], pkg.(*List[string]).Push), or a
// generic function without type arguments (pkg.F) that has a single
// instantiation; closures inside one map the same way (pkg.F[int].func1). A name that maps to several instantiations or to none is
// an error listing the binary's instantiations. A user's instantiation name
// the binary has as is (a wrapper Go makes for calls through interfaces)
// still maps to the shape instantiation, which direct calls reach too.
func (b *Binary) Lookup(name string) (Func, error) {
	funcs := b.symbols().funcs
	fn, exact := funcs[name]
	if exact && (dictIndex(name) >= 0 || !strings.Contains(name, "[")) {
		return fn, nil
	}
	shaped, err := b.resolveGeneric(name)
	switch {
	case err == nil:
		return funcs[shaped], nil
	case exact:
		return fn, nil
	case err == errNoInstance:
		// The suggestions cost a distance to every name: only for the
		// error the user sees (a method of a generic type found exactly
		// comes here too, for every probe).
		msg := fmt.Sprintf("unknown symbol %s in %s", name, b.Path)
		if s := b.Suggest(name); len(s) > 0 {
			msg += " (did you mean " + strings.Join(s, ", ") + "?)"
		}
		return Func{}, errors.New(msg)
	}
	return Func{}, err
}

// errNoInstance: no shape instantiation has the name's skeleton.
var errNoInstance = errors.New("no instantiation")

// resolveGeneric maps a name without shapes to the binary's one shape
// instantiation it can mean.
func (b *Binary) resolveGeneric(name string) (string, error) {
	skel, args := skeleton(name)
	var cands []string
	for _, n := range b.symbols().names {
		if !strings.Contains(n, shapePrefix) {
			continue
		}
		if s, _ := skeleton(n); s == skel {
			cands = append(cands, n)
		}
	}
	if len(cands) == 0 {
		return "", errNoInstance
	}
	list := strings.Join(cands, ", ")
	if len(args) == 0 {
		if len(cands) == 1 {
			return cands[0], nil
		}
		return "", fmt.Errorf("%s is generic and has %d instantiations in %s: name one with its type arguments or its shapes: %s", name, len(cands), b.Path, list)
	}
	var matches []string
	unknown := ""
	for _, c := range cands {
		_, shapes := skeleton(c)
		if len(shapes) != len(args) {
			continue
		}
		ok := true
		for i, a := range args {
			if strings.HasPrefix(a, shapePrefix) {
				ok = ok && a == shapes[i]
				continue
			}
			s := shapesOf(a)
			if s == nil {
				s = b.namedShape(a)
			}
			if s == nil {
				unknown = a
				ok = false
				break
			}
			if !contains(s, shapes[i]) {
				ok = false
			}
		}
		if ok {
			matches = append(matches, c)
		}
	}
	sort.Strings(matches)
	switch {
	case len(matches) == 1:
		return matches[0], nil
	case len(matches) > 1:
		return "", fmt.Errorf("%s maps to %d shape instantiations in %s: name one: %s", name, len(matches), b.Path, strings.Join(matches, ", "))
	case unknown != "":
		return "", fmt.Errorf("%s: cannot tell the shape of type argument %s from its name: name the instantiation by its shapes, one of: %s", name, unknown, list)
	}
	return "", fmt.Errorf("%s: no instantiation of that shape in %s; it has: %s", name, b.Path, list)
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}
