package probes

import (
	"os"
	"path/filepath"
	"testing"
)

// TestLoadErrors: a probe file's mistakes are one line that starts with
// the file and its line.
func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, c := range []struct{ yaml, want string }{
		{"probes:\n  - symbol: x\n    name: y\n    foo: 1\n",
			`probes.yaml line 4: unknown key "foo" in probe "x" (want symbol, name, kind, span, capture_error, async, attributes or signature)`},
		{"probes:\n  - symbol: x\n    attributes:\n      - {key: k, from: arg0, type: int, size: 3}\n",
			`probes.yaml line 4: unknown key "size" in attribute "k" of probe "x" (want key, from, type or max_len)`},
		{"probes:\n  - symbol: x\n    async: {goroutine: true}\n",
			`probes.yaml line 3: unknown key "goroutine" in async of probe "x" (want goroutines, completion or handle)`},
		{"probes:\n  - symbol: x\n    span: maybe\n", `probes.yaml line 3: span in probe "x": want true or false, not "maybe"`},
		{"probes:\n  - symbol: x\n  - symbol: y\n    capture_error: 2\n", `probes.yaml line 4: capture_error in probe "y": want true or false, not "2"`},
		{"probe:\n  - symbol: x\n", `probes.yaml line 1: unknown key "probe" (want probes)`},
		{"probes: [\n", `probes.yaml line 1: invalid YAML: did not find expected node content`},
		// Mistakes of meaning keep their wording, after the file.
		{"probes:\n  - symbol: x\n    kind: odd\n", `probe file probes.yaml: probe 1 (x): kind "odd": want internal, server, client, producer or consumer`},
		{"", `probe file probes.yaml: empty: want ` + "`probes:`" + ` with at least one probe`},
	} {
		file := filepath.Join(dir, "probes.yaml")
		if err := os.WriteFile(file, []byte(c.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load("probes.yaml")
		if err == nil || err.Error() != c.want {
			t.Errorf("%q:\n got %v\nwant %s", c.yaml, err, c.want)
		}
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || err.Error() != "probe file: open "+filepath.Join(dir, "missing.yaml")+": no such file or directory" {
		t.Errorf("a missing file: %v", err)
	}
}
