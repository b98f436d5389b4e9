package probes

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	specs, err := Parse([]byte(`
probes:
  - symbol: main.(*Store).Get
    name: store.get
    kind: client
    capture_error: true
    span: false
    attributes:
      - {key: k, from: arg1, type: string, max_len: 16}
      - {key: r, from: result0, type: int}
    signature: "func(s *Store, key string) (int, error)"
  - symbol: main.f
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 2 {
		t.Fatalf("got %d specs", len(specs))
	}
	s := specs[0]
	if s.SpanName() != "store.get" || s.Kind != "client" || !s.CaptureError || s.OpensSpan() || len(s.Attributes) != 2 || s.Attributes[0].MaxLen != 16 {
		t.Fatalf("spec parsed wrong: %+v", s)
	}
	if specs[1].SpanName() != "main.f" || !specs[1].OpensSpan() {
		t.Fatalf("defaults wrong: %+v", specs[1])
	}
}

func TestParseErrors(t *testing.T) {
	cases := map[string]string{
		"":                                    "empty",
		"probes: []":                          "no probes",
		"probes:\n  - name: x":                "symbol is required",
		"probes:\n  - {symbol: a, colour: 1}": `line 2: unknown key "colour" in probe "a"`,
		"probes:\n  - {symbol: a, kind: odd}": `kind "odd"`,
		"probes:\n  - symbol: a\n    attributes: [{key: k, from: arg, type: int}]":                                   `from "arg"`,
		"probes:\n  - symbol: a\n    attributes: [{key: k, from: arg0, type: float}]":                                `type "float"`,
		"probes:\n  - symbol: a\n    attributes: [{key: k, from: arg0, type: int}, {key: k, from: arg1, type: int}]": "used twice",
		"probes:\n  - symbol: a\n    async: {}":                                                                      "async: want",
		"probes:\n  - symbol: a\n    async: {goroutines: true, completion: b}":                                       "exclude each other",
		"probes:\n  - symbol: a\n    async: {completion: b, handle: arg0}":                                           `handle "arg0"`,
		"probes: [": "invalid YAML",
	}
	for in, want := range cases {
		_, err := Parse([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want error containing %q", in, err, want)
		}
	}
}

func TestParseSignatureLayout(t *testing.T) {
	sig, err := ParseSignature(AMD64, "func(s *Store, key string, n int, f float64, xs []byte, b bool, e error) (string, error)")
	if err != nil {
		t.Fatal(err)
	}
	regs := func(p Param) []uint8 { return p.Regs }
	want := [][]uint8{{0}, {1, 2}, {3}, nil, {4, 5, 6}, {7}, nil}
	for i, w := range want {
		got := regs(sig.Params[i])
		if len(got) != len(w) {
			t.Fatalf("param %d (%s) regs %v, want %v", i, sig.Params[i].Type, got, w)
		}
		for j := range w {
			if got[j] != w[j] {
				t.Fatalf("param %d (%s) regs %v, want %v", i, sig.Params[i].Type, got, w)
			}
		}
	}
	// The error needs two registers and only R11 is left: it goes on the stack.
	if !sig.Params[6].OnStack {
		t.Errorf("error param should be on the stack: %+v", sig.Params[6])
	}
	if sig.Params[3].OnStack || len(sig.Params[3].Regs) != 0 {
		t.Errorf("float param takes no integer register: %+v", sig.Params[3])
	}
	// Results are assigned from RAX again.
	if r := sig.Results; len(r) != 2 || r[0].Kind != KindString || r[0].Regs[0] != 0 || r[1].Kind != KindError || r[1].Regs[0] != 2 || r[1].Regs[1] != 3 {
		t.Errorf("results laid out wrong: %+v", sig.Results)
	}
	if _, err := ParseSignature(AMD64, "func(s Store)"); err == nil || !strings.Contains(err.Error(), "cannot lay out type Store without DWARF") {
		t.Errorf("named struct accepted: %v", err)
	}
	if _, err := ParseSignature(AMD64, "int"); err == nil {
		t.Error("non-function accepted")
	}
}

func TestPlace(t *testing.T) {
	cases := []struct {
		name  string
		code  []byte
		entry uint64
		dedup bool
		rets  []uint64
		check bool
	}{
		{
			// CMPQ SP, 0x10(R14); JBE +n; PUSHQ BP; MOVQ SP, BP; POPQ BP; RET; ... RET
			name:  "stack check then push",
			code:  []byte{0x49, 0x3b, 0x66, 0x10, 0x76, 0x08, 0x55, 0x48, 0x89, 0xe5, 0x5d, 0xc3, 0x5d, 0xc3},
			entry: 6, rets: []uint64{11, 13}, check: true,
		},
		{
			// MOVQ SP,R12; SUBQ $0x7f88,R12; JB; CMPQ R12,0x10(R14); JBE; PUSHQ BP; POPQ BP; RET
			name:  "big frame",
			code:  []byte{0x49, 0x89, 0xe4, 0x49, 0x81, 0xec, 0x88, 0x7f, 0x00, 0x00, 0x72, 0x05, 0x4d, 0x3b, 0x66, 0x10, 0x76, 0x02, 0x55, 0x5d, 0xc3},
			entry: 18, rets: []uint64{20}, check: true,
		},
		{
			// ADDQ BX, AX; RET: a leaf without a stack check
			name: "leaf", code: []byte{0x48, 0x01, 0xd8, 0xc3}, entry: 0, rets: []uint64{3},
		},
		{
			// CMPQ SP, 0x10(R14); JBE; MOVQ SP, BP(no push); RET: entry stays at 0, deduplicated
			name: "stack check without push", code: []byte{0x49, 0x3b, 0x66, 0x10, 0x76, 0x01, 0x90, 0xc3},
			entry: 0, dedup: true, rets: []uint64{7}, check: true,
		},
	}
	for _, c := range cases {
		pl, err := Place(AMD64, c.code)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if pl.Entry != c.entry || pl.Dedup != c.dedup || pl.StackCheck != c.check || len(pl.Returns) != len(c.rets) {
			t.Errorf("%s: %+v", c.name, pl)
			continue
		}
		for i := range c.rets {
			if pl.Returns[i] != c.rets[i] {
				t.Errorf("%s: returns %v, want %v", c.name, pl.Returns, c.rets)
			}
		}
	}
	if pl, err := Place(AMD64, []byte{0xc3}); err != nil || !pl.EntryIsReturn || len(pl.Returns) != 0 || pl.Entry != 0 {
		t.Errorf("function that is one RET: %+v, %v", pl, err)
	}
	if pl, err := Place(AMD64, []byte{0x90, 0x90}); err != nil || len(pl.Returns) != 0 {
		t.Errorf("function without RET: %+v, %v", pl, err)
	}
}

func TestLevenshtein(t *testing.T) {
	if d := levenshtein("main.Outr", "main.Outer"); d != 1 {
		t.Errorf("distance %d", d)
	}
}
