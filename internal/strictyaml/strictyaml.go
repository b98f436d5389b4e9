// Package strictyaml decodes the configuration files a user writes (probe
// files, the daemon's selectors) and words every mistake as one line that
// says where it is and what is wrong: the line, the item it is in (`probe
// "main.F"`), and what was wanted, where the YAML library says "unmarshal
// errors:" over several lines and names Go types.
package strictyaml

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ErrEmpty is returned for a file with no YAML document.
var ErrEmpty = errors.New("empty")

// Error is a mistake at a line of the file.
type Error struct {
	Line int
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// Names says, for each list key (`probes`), the key that names its items
// (`symbol`), for messages such as `unknown key "foo" in probe "main.F"`.
// An item is the key without its final "s", then its name, or its position
// when it has none.
type Names map[string]string

// Decode decodes data into v, a pointer to a struct whose fields carry yaml
// tags, refusing keys that no field has and values of the wrong kind, each
// with its line.
func Decode(data []byte, v any, names Names) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return syntaxError(err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return ErrEmpty
	}
	c := checker{names: names}
	if err := c.check(doc.Content[0], reflect.TypeOf(v).Elem(), "", ""); err != nil {
		return err
	}
	if err := doc.Content[0].Decode(v); err != nil {
		return syntaxError(err) // not expected once checked
	}
	return nil
}

var lineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// syntaxError words an error of the YAML library.
func syntaxError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		if m := lineRE.FindStringSubmatch(te.Errors[0]); m != nil {
			n, _ := strconv.Atoi(m[1])
			return &Error{Line: n, Msg: m[2]}
		}
		return errors.New(te.Errors[0])
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &Error{Line: n, Msg: "invalid YAML: " + m[2]}
	}
	return errors.New("invalid YAML: " + msg) // the CLI puts a message of several lines on one
}

type checker struct{ names Names }

// check walks node against t. key is the node's key in its mapping ("" for
// the document and list items), in the item holding it ("" at the top).
func (c checker) check(n *yaml.Node, t reflect.Type, key, in string) error {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil // absent
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return c.want(n, key, in, "a mapping (key: value)")
		}
		// The keys of a mapping under a key are in it: `async of probe "F"`.
		inner := in
		if key != "" {
			inner = key + strings.Replace(inWhat(in), " in ", " of ", 1)
		}
		fields := map[string]reflect.StructField{}
		var known []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			fields[name] = f
			known = append(known, name)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fields[k.Value]
			if !ok {
				return &Error{Line: k.Line, Msg: fmt.Sprintf("unknown key %q%s (want %s)", k.Value, inWhat(inner), orList(known))}
			}
			if err := c.check(v, f.Type, k.Value, inner); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return c.want(n, key, in, "a list")
		}
		item := strings.TrimSuffix(key, "s")
		for i, e := range n.Content {
			label := fmt.Sprintf("%s %d", item, i+1)
			if name := c.itemName(e, key); name != "" {
				label = fmt.Sprintf("%s %q", item, name)
			}
			if in != "" {
				label += " of " + in
			}
			if err := c.check(e, t.Elem(), "", label); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return c.want(n, key, in, "a mapping (key: value)")
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := c.check(n.Content[i+1], t.Elem(), key+"."+n.Content[i].Value, in); err != nil {
				return err
			}
		}
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return c.want(n, key, in, scalarWord(t))
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		return c.want(n, key, in, scalarWord(t))
	}
	return nil
}

// itemName is the value of the naming key of a list item, if it has one.
func (c checker) itemName(n *yaml.Node, list string) string {
	nameKey := c.names[list]
	if nameKey == "" || n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == nameKey && n.Content[i+1].Kind == yaml.ScalarNode {
			return n.Content[i+1].Value
		}
	}
	return ""
}

// want is the error for a value of the wrong kind.
func (c checker) want(n *yaml.Node, key, in, want string) error {
	what := "the file"
	if key != "" {
		what = key
	} else if in != "" {
		what, in = in, ""
	}
	return &Error{Line: n.Line, Msg: fmt.Sprintf("%s%s: want %s, not %s", what, inWhat(in), want, describe(n))}
}

func inWhat(in string) string {
	if in == "" {
		return ""
	}
	return " in " + in
}

// describe words a node as its value, or its kind.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

func scalarWord(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number from 0"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	}
	return "a " + t.String()
}

// orList words names as "a, b or c".
func orList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
