// Package probes says what to trace and where: probe specs (YAML), reading
// target binaries (build info, functions from .gopclntab, DWARF, RET offsets
// by disassembly, the register ABI) and compiling specs into the recipes the
// BPF programs follow.
package probes

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"

	"github.com/tcagent/tcagent/internal/strictyaml"
)

// File is a probe file: `probes:` and a list of specs.
type File struct {
	Probes []Spec `yaml:"probes"`
}

// Spec is one probe as the user writes it.
type Spec struct {
	Symbol       string      `yaml:"symbol"`
	Name         string      `yaml:"name"`
	Kind         string      `yaml:"kind"`
	Span         *bool       `yaml:"span"`
	CaptureError bool        `yaml:"capture_error"`
	Async        *Async      `yaml:"async"`
	Attributes   []Attribute `yaml:"attributes"`
	Signature    string      `yaml:"signature"`
}

// Async makes a probe's span outlive its call.
type Async struct {
	Goroutines bool   `yaml:"goroutines"`
	Completion string `yaml:"completion"`
	Handle     string `yaml:"handle"`
}

// Attribute captures one argument or result as a span attribute.
type Attribute struct {
	Key  string `yaml:"key"`
	From string `yaml:"from"`
	Type string `yaml:"type"`
	// MaxLen bounds captured strings in bytes (default 128, at most 256).
	MaxLen int `yaml:"max_len"`
}

// SpanName is the span's name: Name, else the symbol.
func (s *Spec) SpanName() string {
	if s.Name != "" {
		return s.Name
	}
	return s.Symbol
}

// OpensSpan reports whether the probe opens a span (span: true, the default).
func (s *Spec) OpensSpan() bool { return s.Span == nil || *s.Span }

// Load reads and validates a probe file.
func Load(file string) ([]Spec, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("probe file: %w", err)
	}
	specs, err := Parse(data)
	if le := (*strictyaml.Error)(nil); errors.As(err, &le) {
		return nil, fmt.Errorf("%s line %d: %s", file, le.Line, le.Msg)
	}
	if err != nil {
		return nil, fmt.Errorf("probe file %s: %w", file, err)
	}
	return specs, nil
}

var fromRE = regexp.MustCompile(`^(arg|result)(\d+)$`)

// ParseFrom splits an attribute source (arg1, result0).
func ParseFrom(from string) (isResult bool, index int, err error) {
	m := fromRE.FindStringSubmatch(from)
	if m == nil {
		return false, 0, fmt.Errorf("from %q: want argN or resultN", from)
	}
	n, _ := strconv.Atoi(m[2])
	return m[1] == "result", n, nil
}

// specNames are the keys that name the items of a probe file's lists, for
// its errors.
var specNames = strictyaml.Names{"probes": "symbol", "attributes": "key"}

// Parse reads probe specs from YAML. Unknown keys are errors, with their
// line (a *strictyaml.Error).
func Parse(data []byte) ([]Spec, error) {
	var f File
	if err := strictyaml.Decode(data, &f, specNames); err != nil {
		if errors.Is(err, strictyaml.ErrEmpty) {
			return nil, errors.New("empty: want `probes:` with at least one probe")
		}
		return nil, err
	}
	if len(f.Probes) == 0 {
		return nil, errors.New("no probes: want `probes:` with at least one probe")
	}
	for i := range f.Probes {
		if err := f.Probes[i].validate(); err != nil {
			return nil, fmt.Errorf("probe %d (%s): %w", i+1, f.Probes[i].Symbol, err)
		}
	}
	return f.Probes, nil
}

var kinds = map[string]bool{"": true, "internal": true, "server": true, "client": true, "producer": true, "consumer": true}

func (s *Spec) validate() error {
	if s.Symbol == "" {
		return errors.New("symbol is required")
	}
	if !kinds[s.Kind] {
		return fmt.Errorf("kind %q: want internal, server, client, producer or consumer", s.Kind)
	}
	if a := s.Async; a != nil {
		switch {
		case a.Goroutines && a.Completion != "":
			return errors.New("async: goroutines and completion exclude each other")
		case !a.Goroutines && a.Completion == "":
			return errors.New("async: want `goroutines: true` or `completion: SYMBOL` with `handle: resultN`")
		case a.Completion != "":
			if isResult, _, err := ParseFrom(a.Handle); err != nil || !isResult {
				return fmt.Errorf("async: handle %q: want resultN, the result that is the completion's receiver", a.Handle)
			}
		case a.Handle != "":
			return errors.New("async: handle is for completion probes")
		}
	}
	seen := map[string]bool{}
	for _, a := range s.Attributes {
		if a.Key == "" {
			return errors.New("attribute without key")
		}
		if seen[a.Key] {
			return fmt.Errorf("attribute %s: key used twice", a.Key)
		}
		seen[a.Key] = true
		if _, _, err := ParseFrom(a.From); err != nil {
			return fmt.Errorf("attribute %s: %w", a.Key, err)
		}
		switch a.Type {
		case "int", "uint", "bool", "string":
		default:
			return fmt.Errorf("attribute %s: type %q: want int, uint, bool or string", a.Key, a.Type)
		}
		if a.MaxLen < 0 || a.MaxLen > 256 {
			return fmt.Errorf("attribute %s: max_len %d: want 1 to 256", a.Key, a.MaxLen)
		}
	}
	return nil
}
