// Package builtin holds the probe sets tcagent applies without a probe file:
// `http` (net/http servers and clients), `sql` (database/sql), `redis`
// (go-redis), `mongo` (the MongoDB drivers), `grpc` (grpc-go), `otel` (the program's own OpenTelemetry
// SDK, whose traces tcagent's join), `routes` (the matched route of
// gin, chi, echo and gorilla/mux, on the http server span) and `kafka`
// (kafka-go and sarama): their kernel side. Each set's file
// says what its probes capture, under exported capture keys, and gives
// each probe a probes.Role; its span side, which reads those keys, is the
// file of the same name in binder/semconv. Each probe reads the
// library's structs through field paths whose offsets come from the target's
// DWARF, whatever release built it, or, for binaries without it, from a
// table generated for every supported Go release (offsets_table.go, `make
// offsets`). A stripped binary whose release is not in the table gets a
// one-line reason naming the release and the set is skipped: an offset is
// never guessed.
package builtin

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/probes"
)

// Sets are the built-in sets, by name.
var Sets = []string{"http", "sql", "redis", "mongo", "grpc", "otel", "routes", "kafka"}

// Report says what became of a set for one binary.
type Report struct {
	Set string
	// Applied is false when the set was skipped; Reason says why. A set
	// applied with a Reason works in part: the Reason says what is missing.
	Applied bool
	Reason  string
	// Probes are the functions probed.
	Probes []string
	// Offsets maps each field read to where its offset came from: "DWARF"
	// or "table (go1.N)".
	Offsets map[string]string
}

// offsets resolves field offsets for one binary.
type offsets struct {
	b       *probes.Binary
	sources map[string]string
	// partial says what a set applied without, "" when nothing.
	partial string
}

// get returns the offset of field ("net/http.Request.Method"); ok is false
// when the field does not exist in the binary's release, err when the
// offset cannot be known.
func (o *offsets) get(field string) (int64, bool, error) {
	i := strings.LastIndex(field, ".")
	if off, ok, err := o.b.DWARFField(field[:i], field[i+1:]); err != nil {
		return 0, false, err
	} else if ok {
		o.sources[field] = "DWARF"
		return off, true, nil
	} else if o.b.DWARFHasType(field[:i]) {
		// The binary's own DWARF describes every type it links: a type
		// there without the field has none, whatever the release.
		return 0, false, nil
	}
	// A type DWARF lacks is not linked in: the tables may still say where
	// its field would be (for a set that reads several types, some unused).
	if mod, ok := o.module(field); ok {
		key := mod.Path + "@" + mod.Version
		off, ok := moduleOffsetsTable[key][field]
		if ok {
			o.sources[field] = "table (" + key + ")"
		}
		return off, ok, nil
	}
	rel := o.b.Release()
	t, known := offsetsTable[rel]
	if !known && o.b.HasDWARF {
		return 0, false, nil // not linked in, and no table to say more
	}
	if !known {
		return 0, false, fmt.Errorf("%s has no DWARF and %s is not in the offsets table (Go %s to %s)", o.b.Path, o.b.GoVersion,
			strings.TrimPrefix(releases()[0], "go"), strings.TrimPrefix(releases()[len(releases())-1], "go"))
	}
	off, ok := t[field]
	if ok {
		o.sources[field] = "table (" + rel + ")"
	}
	return off, ok, nil
}

// module returns the module a field's package belongs to, false for the
// standard library's.
func (o *offsets) module(field string) (probes.Module, bool) {
	typ := field[:strings.LastIndex(field, ".")] // package.Type
	pkg := typ[:strings.LastIndex(typ, ".")]
	if !strings.Contains(strings.SplitN(pkg, "/", 2)[0], ".") {
		return probes.Module{}, false
	}
	// The longest module path holding the package: genproto/googleapis/rpc
	// before genproto.
	best := probes.Module{Path: pkg, Version: "(unknown)"}
	found := false
	// The main module counts too when it has a release: a library's own
	// tool built from the module proxy (go install module/cmd@version).
	mods := o.b.Modules
	if o.b.Main.Version != "" && o.b.Main.Version != "(devel)" {
		mods = append([]probes.Module{o.b.Main}, mods...)
	}
	for _, m := range mods {
		if (pkg == m.Path || strings.HasPrefix(pkg, m.Path+"/")) && (!found || len(m.Path) > len(best.Path)) {
			best, found = m, true
		}
	}
	return best, true
}

// note adds what a set applies without to its partial note.
func (o *offsets) note(what string) {
	if o.partial != "" {
		what = o.partial + "; " + what
	}
	o.partial = what
}

func (o *offsets) must(field string) (uint16, error) {
	off, ok, err := o.get(field)
	if err != nil {
		return 0, err
	}
	if !ok {
		if m, ok := o.module(field); ok && !o.b.HasDWARF {
			return 0, fmt.Errorf("%s has no DWARF, and %s@%s is not in the offsets table", o.b.Path, m.Path, m.Version)
		}
		return 0, fmt.Errorf("%s has no field %s", o.b.GoVersion, field)
	}
	return uint16(off), nil
}

// field names a struct field and where its offset goes.
type fieldOffset struct {
	dst   *uint16
	field string
}

// mustAll resolves every field, or says which one cannot be.
func (o *offsets) mustAll(fs ...fieldOffset) error {
	for _, f := range fs {
		off, err := o.must(f.field)
		if err != nil {
			return err
		}
		*f.dst = off
	}
	return nil
}

func releases() []string {
	var rs []string
	for r := range offsetsTable {
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b string) int {
		if probes.ReleaseLess(a, b) {
			return -1
		}
		if probes.ReleaseLess(b, a) {
			return 1
		}
		return 0
	})
	return rs
}

// NotUsed is the reason given for a set whose package the binary does not
// contain.
const NotUsed = "the binary does not use it"

// Options tune the built-in sets.
type Options struct {
	// SQLQueryText is what db.query.text holds, for SQL statements and
	// MongoDB commands: "sanitized" (literals replaced by ?, the default),
	// "full" or "none".
	SQLQueryText string
	// Propagate (--propagate) adds the probe that hands outgoing HTTP/1
	// requests to the socket programs.
	Propagate bool
	// RetProbes keeps the server span's end on ServeHTTP's RETs even
	// where the emulated site in its caller is found. For the tests of
	// that fallback.
	RetProbes bool
}

// Resolve compiles the built-in sets named in sets (nil: every set) that
// apply to b, numbering probes from firstID. A set that does not apply, or
// whose offsets are unknown, is skipped and reported, never guessed.
func Resolve(b *probes.Binary, sets []string, opts Options, rt probes.Runtime, firstID uint32) ([]*probes.Probe, []Report, error) {
	if sets == nil {
		sets = Sets
	}
	switch opts.SQLQueryText {
	case "":
		opts.SQLQueryText = "sanitized"
	case "sanitized", "full", "none":
	default:
		return nil, nil, fmt.Errorf("SQL query text %q: want sanitized, full or none", opts.SQLQueryText)
	}
	var out []*probes.Probe
	var reports []Report
	for _, name := range sets {
		var build func(*probes.Binary, *offsets, Options, probes.Runtime, uint32) ([]*probes.Probe, error)
		switch name {
		case "http":
			build = httpProbes
		case "sql":
			build = sqlProbes
		case "redis":
			build = redisProbes
		case "mongo":
			build = mongoProbes
		case "grpc":
			build = grpcProbes
		case "otel":
			build = otelProbes
		case "routes":
			build = routesProbes
		case "kafka":
			build = kafkaProbes
		default:
			return nil, nil, fmt.Errorf("unknown built-in probe set %q: want %s or none", name, strings.Join(Sets, ", "))
		}
		o := &offsets{b: b, sources: map[string]string{}}
		ps, err := build(b, o, opts, rt, firstID+uint32(len(out)))
		r := Report{Set: name, Offsets: o.sources}
		switch {
		case err != nil:
			r.Reason = err.Error()
		case len(ps) == 0:
			r.Reason = NotUsed
		default:
			r.Applied, r.Reason = true, o.partial
			for _, p := range ps {
				p.Set = name
				r.Probes = append(r.Probes, p.Spec.Symbol)
			}
			out = append(out, ps...)
		}
		reports = append(reports, r)
	}
	return out, reports, nil
}

// field builds a CapPath capture: from register reg, through hops, to a
// string (size 0) or an integer of size bytes.
func field(reg uint8, size uint8, hopsAndField ...uint16) bpf.Capture {
	n := len(hopsAndField) - 1
	return bpf.Capture{Kind: bpf.CapPath, Reg: reg, Hops: hopsAndField[:n], Field: hopsAndField[n], Size: size, MaxLen: bpf.StringSlotSize}
}

// capture adds c to p at entry or return under the internal key, keeping
// string slots numbered. The captures that decode to attributes come
// first: c goes after them, before an error, handle or receiver capture
// already there (a completion probe's, made by probes.CompileCompletion),
// whose indices move on.
func capture(p *probes.Probe, atReturn bool, key string, c bpf.Capture) {
	isString := func(c bpf.Capture) bool {
		return c.Kind == bpf.CapPath && c.Size == 0 || c.Kind == bpf.CapMapStr || c.Kind == bpf.CapHdrs || c.Kind == bpf.CapString || c.Kind == bpf.CapError
	}
	caps, attrs := &p.Recipe.Entry, &p.EntryAttrs
	moved := []*int{&p.ReceiverCapture}
	if atReturn {
		caps, attrs = &p.Recipe.Return, &p.ReturnAttrs
		moved = []*int{&p.ErrorCapture, &p.HandleCapture}
	}
	a := probes.CapturedAttr{Key: key, Type: "int", Size: int(c.Size), MaxLen: int(c.MaxLen)}
	if isString(c) {
		a.Type, a.Size = "string", 0
		for _, x := range *caps {
			if isString(x) {
				c.Slot++
			}
		}
	}
	at := len(*attrs)
	for _, i := range moved {
		if *i >= at {
			*i++
		}
	}
	*caps = slices.Insert(*caps, at, c)
	*attrs = append(*attrs, a)
}

// hasFunc reports whether b has the function symbol.
func hasFunc(b *probes.Binary, symbol string) bool {
	_, ok := b.Func(symbol)
	return ok
}

// TableOffsets returns the committed offsets of a release ("go1.26"), nil
// when the table does not cover it.
func TableOffsets(release string) map[string]int64 { return offsetsTable[release] }

// TableReleases returns the releases the offsets table covers, oldest first.
func TableReleases() []string { return releases() }

// ModuleTable returns a copy of the committed offsets of every module
// release (path@version), for offsetgen to keep.
func ModuleTable() map[string]map[string]int64 {
	out := make(map[string]map[string]int64, len(moduleOffsetsTable))
	for k, v := range moduleOffsetsTable {
		out[k] = maps.Clone(v)
	}
	return out
}
