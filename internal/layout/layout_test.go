package layout

import (
	"encoding/json"
	"io"
	"maps"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/tcagent/tcagent/"

// ranks orders the packages along the flow. A package imports only
// packages of a lower rank. A package missing here fails the test: place
// each new one deliberately.
var ranks = map[string]int{
	// Helpers no user should import.
	"internal/holds":       0,
	"internal/proc":        0,
	"internal/strictyaml":  0,
	"internal/gotoolchain": 0,
	"internal/layout":      0,
	// The kernel side: programs, what to trace, the built-in sets' recipes.
	"bpf":            1,
	"probes":         2,
	"probes/builtin": 3,
	// The contract a lifecycle publishes on and a binder subscribes to.
	"channel": 4,
	// Events, their lifecycle, spans.
	"reader":         5,
	"lifecycle":      6,
	"binder":         7,
	"binder/semconv": 8,
	// The leaves: spans and metrics out.
	"exporter":            9,
	"exporter/prometheus": 9,
	// Wiring and the programs.
	"agent":       10,
	"discover":    10,
	"daemon":      11,
	"cmd/tcagent": 12,
}

// isolated import no project package: the contract, so that publisher and
// subscriber share nothing else; the exporters, so that they take spans
// and counters from any wiring; the internal helpers.
var isolated = []string{"channel", "exporter", "internal/"}

// anyRank are programs and tests outside the flow: they may import
// anything (nothing imports them).
var anyRank = []string{"bench/", "tools/", "examples/", "kernel-tests", "deploy"}

// pending are imports that break the order and are being removed: the
// test fails on any other break, and on an entry here that no longer
// exists, so the list only shrinks. Issue #19 emptied it.
var pending = map[string]bool{}

type pkg struct {
	ImportPath string
	Imports    []string
}

func TestImportDirection(t *testing.T) {
	cmd := exec.Command("go", "list", "-json", module+"...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := 0
	remaining := maps.Clone(pending)
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		seen++
		name := strings.TrimPrefix(p.ImportPath, module)
		if hasPrefix(name, anyRank) {
			continue
		}
		rank, ok := ranks[name]
		if !ok {
			t.Errorf("package %s has no rank in layout_test.go: place it in the flow", name)
			continue
		}
		for _, imp := range p.Imports {
			dep, ok := strings.CutPrefix(imp, module)
			if !ok {
				continue
			}
			if edge := name + " -> " + dep; pending[edge] {
				delete(remaining, edge)
				continue
			}
			switch r, known := ranks[dep]; {
			case !known:
				t.Errorf("%s imports %s, which has no rank", name, dep)
			case hasPrefix(name, isolated):
				t.Errorf("%s imports %s: the contract, exporters and internal helpers import no project package", name, dep)
			case r >= rank:
				t.Errorf("%s (rank %d) imports %s (rank %d): a stage imports only earlier ones", name, rank, dep, r)
			}
		}
	}
	for edge := range remaining {
		t.Errorf("%s no longer breaks the order: remove it from pending", edge)
	}
	if seen < len(ranks)/2 {
		t.Fatalf("go list listed only %d packages", seen)
	}
}

// hasPrefix reports whether name starts with one of prefixes (so
// "exporter" covers exporter/prometheus).
func hasPrefix(name string, prefixes []string) bool {
	for _, p := range prefixes {
		if name == p || strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
