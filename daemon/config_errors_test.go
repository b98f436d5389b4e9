package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadConfigErrors: the daemon's configuration mistakes are one line
// that starts with the file and its line, and names the selector.
func TestLoadConfigErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "daemon.yaml")
	for _, c := range []struct{ yaml, want string }{
		{"selectors:\n  - name: web\n    exe: /x\n    colour: red\n",
			`line 4: unknown key "colour" in selector "web" (want name, exe, process_name, cmdline, port, container_id, cgroup, kubernetes, probes, builtin or service_name)`},
		{"selectors:\n  - exe: /x\n  - exe: /y\n    colour: red\n", `line 4: unknown key "colour" in selector 2 (want`},
		{"selectors:\n  - name: web\n    kubernetes: {namespaces: a}\n",
			`line 3: unknown key "namespaces" in kubernetes of selector "web" (want namespace, pod_labels or container)`},
		{"selectors:\n  - name: web\n    port: http\n", `line 3: port in selector "web": want a whole number, not "http"`},
		{"selectors:\n  - name: web\n    builtin: http\n", `line 3: builtin in selector "web": want a list, not "http"`},
		{"selectors:\n  - name: web\n    kubernetes: {pod_labels: {app: [a]}}\n", `line 3: pod_labels.app in kubernetes of selector "web": want a string, not a list`},
		{"selector:\n  - exe: /x\n", `line 1: unknown key "selector" (want selectors)`},
	} {
		if err := os.WriteFile(file, []byte(c.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadConfig(file)
		if want := file + " " + c.want; err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q:\n got %v\nwant %s", c.yaml, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error on several lines: %q", c.yaml, err)
		}
	}
	// A mistake of meaning names the selector as the file does.
	for yaml, want := range map[string]string{
		"selectors:\n  - name: web\n    exe: '/x/['\n": `selector "web": exe "/x/[": syntax error in pattern`,
		"selectors:\n  - exe: relative\n":              `selector 1: exe "relative": want an absolute path (a glob)`,
	} {
		if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadConfig(file); err == nil || err.Error() != "daemon config "+file+": "+want {
			t.Errorf("%q: %v, want daemon config %s: %s", yaml, err, file, want)
		}
	}
}
