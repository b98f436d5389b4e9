package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tcagent/tcagent/probes/builtin"
)

// TestTableMatchesDWARF builds the reference program with the local Go and
// checks that the committed table holds exactly what its DWARF says: a stale
// or hand-edited table fails here.
func TestTableMatchesDWARF(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "reference")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = "reference"
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	got, err := read(bin, fields)
	if err != nil {
		t.Fatal(err)
	}
	v := runtime.Version() // go1.26.8
	release := v[:strings.LastIndex(v, ".")]
	want := builtin.TableOffsets(release)
	if want == nil {
		t.Fatalf("the table has no %s: run make offsets", release)
	}
	if len(got) != len(want) {
		t.Errorf("DWARF has %d fields, the table %d", len(got), len(want))
	}
	for f, off := range got {
		if want[f] != off {
			t.Errorf("%s: DWARF says %d, the table %d", f, off, want[f])
		}
	}
	for _, f := range fields {
		if _, ok := got[f]; !ok && !strings.Contains(f, ".pat") {
			t.Errorf("%s not found in the reference program's DWARF", f)
		}
	}
}

// TestReleasesListed keeps the README's supported versions and the table's
// releases in step.
func TestReleasesListed(t *testing.T) {
	rs := builtin.TableReleases()
	if len(rs) != len(releases) {
		t.Fatalf("table has %v, offsetgen builds %v", rs, releases)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	span := strings.TrimPrefix(rs[0], "go") + " – " + strings.TrimPrefix(rs[len(rs)-1], "go")
	if !strings.Contains(string(readme), span) {
		t.Errorf("README does not list the supported Go releases as %q", span)
	}
}
