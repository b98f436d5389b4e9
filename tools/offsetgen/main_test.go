package main

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/tcagent/tcagent/probes"
	"github.com/tcagent/tcagent/probes/builtin"
)

// TestTableMatchesDWARF builds the reference program with the local Go and
// with the newest release offsetgen covers, and checks that the committed
// table of the fields the built-ins read holds exactly what their DWARF says,
// each field found in one of them (runtime.g's table, and every release, are
// TestTableMatchesDWARFEveryRelease's).
func TestTableMatchesDWARF(t *testing.T) {
	local := runtime.Version() // go1.26.8
	found := map[string]bool{}
	for _, tc := range []string{local, releases[len(releases)-1]} {
		bin := filepath.Join(t.TempDir(), "reference")
		if err := buildWith(tc, "reference", bin, t.TempDir()); err != nil {
			t.Fatal(err)
		}
		got, err := read(bin, fields)
		if err != nil {
			t.Fatal(err)
		}
		release := tc[:strings.LastIndex(tc, ".")]
		want := builtin.TableOffsets(release)
		if want == nil {
			t.Fatalf("the table has no %s: run make offsets", release)
		}
		if len(got) != len(want) {
			t.Errorf("%s: DWARF has %d fields, the table %d", tc, len(got), len(want))
		}
		for f, off := range got {
			found[f] = true
			if w, ok := want[f]; !ok || w != off {
				t.Errorf("%s: %s: DWARF says %d, the table %d (present: %v)", tc, f, off, w, ok)
			}
		}
	}
	// Every field exists in one of them: the ones a release renamed are
	// found under their other name.
	for _, f := range fields {
		if !found[f] && !strings.Contains(f, ".pat") && !strings.Contains(f, "http2responseWriter") {
			t.Errorf("%s not found in the reference programs' DWARF", f)
		}
	}
}

// TestReleasesListed keeps offsetgen's releases, both tables, and the
// README's Go rows (Requirements and Supported versions) in step: the
// README names, as the releases supported, the table's oldest to its
// newest.
func TestReleasesListed(t *testing.T) {
	var want []string
	for _, r := range releases {
		want = append(want, r[:strings.LastIndex(r, ".")])
	}
	if rs := builtin.TableReleases(); !slices.Equal(rs, want) {
		t.Errorf("the offsets table has %v, offsetgen builds %v", rs, want)
	}
	if rs := probes.GoTableReleases(); !slices.Equal(rs, want) {
		t.Errorf("the runtime table has %v, offsetgen builds %v", rs, want)
	}
	first, last := strings.TrimPrefix(want[0], "go"), strings.TrimPrefix(want[len(want)-1], "go")
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile(`(?m)^\| Go \(target\) \| (1\.\d+) – (1\.\d+),`).FindStringSubmatch(string(readme))
	if row == nil {
		t.Fatal(`README has no "| Go (target) | 1.N – 1.M," row`)
	}
	if row[1] != first || row[2] != last {
		t.Errorf("README's Supported versions row says Go %s – %s, the tables %s – %s", row[1], row[2], first, last)
	}
	req := regexp.MustCompile(`(?m)^- Targets: Go (1\.\d+) to (1\.\d+) `).FindStringSubmatch(string(readme))
	if req == nil || req[1] != first || req[2] != last {
		t.Errorf("README's Requirements say %v, the tables %s to %s", req, first, last)
	}
}
