package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcagent/tcagent/probes"
	"github.com/tcagent/tcagent/probes/builtin"
)

// TestTableMatchesDWARFEveryRelease builds the reference program with every
// release the table was generated from (GOTOOLCHAIN fetches each through
// the module proxy once; scripts/test-setup.sh does it up front, and Go's
// build cache keeps the builds cheap after the first run) and checks the
// tables' entries for that release (the modules' fields and runtime.g's)
// against the program's DWARF: a stale or hand-edited entry of any release
// fails here, not only the local one's.
func TestTableMatchesDWARFEveryRelease(t *testing.T) {
	dir := t.TempDir()
	for _, rel := range releases {
		release := rel[:strings.LastIndex(rel, ".")]
		t.Run(release, func(t *testing.T) {
			bin := filepath.Join(dir, rel)
			if err := buildWith(rel, "reference", bin, dir); err != nil {
				t.Fatal(err)
			}
			got, err := read(bin, fields)
			if err != nil {
				t.Fatal(err)
			}
			want := builtin.TableOffsets(release)
			if want == nil {
				t.Fatalf("the table has no %s: run make offsets", release)
			}
			for f, off := range got {
				if w, ok := want[f]; !ok || w != off {
					t.Errorf("%s: DWARF of a %s build says %d, the table %d (present %v)", f, rel, off, w, ok)
				}
			}
			for f := range want {
				if _, ok := got[f]; !ok {
					t.Errorf("%s: in the table for %s, but not in a %s build's DWARF", f, release, rel)
				}
			}
			g, err := read(bin, gFields)
			if err != nil {
				t.Fatal(err)
			}
			rt, ok := probes.TableRuntime(release)
			if !ok {
				t.Fatalf("the runtime table has no %s: run make offsets", release)
			}
			if int64(rt.GoidOffset) != g["runtime.g.goid"] || int64(rt.StackHiOffset) != g["runtime.g.stack"]+g["runtime.stack.hi"] ||
				int64(rt.ParentGoidOffset) != g["runtime.g.parentGoid"] {
				t.Errorf("%s: DWARF says runtime.g %v, the table %+v", rel, g, rt)
			}
		})
	}
}
