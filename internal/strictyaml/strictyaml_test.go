package strictyaml

import (
	"errors"
	"strings"
	"testing"
)

type file struct {
	Items []item `yaml:"items"`
	Title string `yaml:"title"`
}

type item struct {
	ID     string            `yaml:"id"`
	On     *bool             `yaml:"on"`
	Count  int               `yaml:"count"`
	Sub    *sub              `yaml:"sub"`
	Parts  []part            `yaml:"parts"`
	Labels map[string]string `yaml:"labels"`
	Tags   []string          `yaml:"tags"`
	hidden string
}

type sub struct {
	Deep bool `yaml:"deep"`
}

type part struct {
	Key string `yaml:"key"`
}

var names = Names{"items": "id", "parts": "key"}

func TestDecodeErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"colour: red\n", `line 1: unknown key "colour" (want items or title)`},
		{"items:\n  - id: a\n    colour: red\n", `line 3: unknown key "colour" in item "a" (want id, on, count, sub, parts, labels or tags)`},
		{"items:\n  - on: true\n  - count: 1\n    colour: red\n", `line 4: unknown key "colour" in item 2 (want`},
		{"items:\n  - id: a\n    sub: {deep: true, deeper: 1}\n", `line 3: unknown key "deeper" in sub of item "a" (want deep)`},
		{"items:\n  - id: a\n    parts:\n      - key: k\n        colour: 1\n", `line 5: unknown key "colour" in part "k" of item "a" (want key)`},
		{"items:\n  - id: a\n    on: maybe\n", `line 3: on in item "a": want true or false, not "maybe"`},
		{"items:\n  - id: a\n    count: many\n", `line 3: count in item "a": want a whole number, not "many"`},
		{"items:\n  - id: [a]\n", `line 2: id in item 1: want a string, not a list`},
		{"items:\n  - id: a\n    sub: [1]\n", `line 3: sub in item "a": want a mapping (key: value), not a list`},
		{"items:\n  - id: a\n    labels: {app: {x: 1}}\n", `line 3: labels.app in item "a": want a string, not a mapping`},
		{"items:\n  - id: a\n    tags: [x, [y]]\n", `line 3: tag 2 of item "a": want a string, not a list`},
		{"items:\n  - plain\n", `line 2: item 1: want a mapping (key: value), not "plain"`},
		{"items: {id: a}\n", `line 1: items: want a list, not a mapping`},
		{"- a\n", `line 1: the file: want a mapping (key: value), not a list`},
		{"items: [\n", `line 1: invalid YAML: `},
		{"items:\n  - id: a\n\tcount: 1\n", `line 2: invalid YAML: found a tab character`},
		{"items:\n  - id: a\n    id: b\n", `line 3: mapping key "id" already defined at line 2`},
		{"hidden: x\n", `line 1: unknown key "hidden"`}, // unexported fields are no keys
	} {
		var f file
		err := Decode([]byte(c.yaml), &f, names)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%q: %v, want %s", c.yaml, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error on several lines: %q", c.yaml, err)
		}
	}
}

func TestDecode(t *testing.T) {
	var f file
	err := Decode([]byte(`
title: t
base: &b {count: 3}
`), &f, names)
	if err == nil || !strings.Contains(err.Error(), `unknown key "base"`) {
		t.Errorf("an unknown anchor holder: %v", err)
	}
	f = file{}
	err = Decode([]byte(`
items:
  - id: a
    on: false
    count: 2
    sub: {deep: true}
    parts: [{key: k}]
    labels: {app: web}
    tags: [x, y]
  - id: b
    sub: ~
    on:
  - &c {id: c, count: 7}
  - *c
`), &f, names)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Items) != 4 || f.Items[0].On == nil || *f.Items[0].On || f.Items[0].Count != 2 || !f.Items[0].Sub.Deep ||
		f.Items[0].Parts[0].Key != "k" || f.Items[0].Labels["app"] != "web" || len(f.Items[0].Tags) != 2 ||
		f.Items[1].Sub != nil || f.Items[1].On != nil || f.Items[3].Count != 7 {
		t.Errorf("decoded %+v", f)
	}
	for _, empty := range []string{"", "\n# nothing\n"} {
		if err := Decode([]byte(empty), &f, names); !errors.Is(err, ErrEmpty) {
			t.Errorf("%q: %v, want ErrEmpty", empty, err)
		}
	}
	var le *Error
	if err := Decode([]byte("title: a\nx: 1\n"), &f, names); !errors.As(err, &le) || le.Line != 2 {
		t.Errorf("the line is not in an *Error: %v", err)
	}
}
