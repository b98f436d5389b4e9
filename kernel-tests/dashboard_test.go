package kerneltests

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// dashboardExprs reads deploy/grafana/tcagent.json's queries, by panel
// title, with Grafana's $__rate_interval made a window a 1s scrape fills.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile("../deploy/grafana/tcagent.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr, RefID string }
		}
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range d.Panels {
		for _, q := range p.Targets {
			out["panel "+p.Title+" "+q.RefID] = strings.ReplaceAll(q.Expr, "$__rate_interval", "30s")
		}
	}
	return out
}

// alertRules reads deploy/prometheus/alerts.yaml's rules.
func alertRules(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile("../deploy/prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out[r.Alert] = r.Expr
		}
	}
	return out
}

// promResults runs an instant query; the number of series it returned.
func promResults(addr, q string) (int, error) {
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status, Error string
		Data          struct{ Result []json.RawMessage }
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("%s", r.Error)
	}
	return len(r.Data.Result), nil
}

// threshold is an alert expression's final comparison with a number.
var threshold = regexp.MustCompile(`\s*(>|>=|<|<=|==|!=)\s*[0-9.]+$`)

// TestDashboardAndAlerts runs a real Prometheus, with the alert rules
// loaded, scraping a real `tcagent daemon` that traces an HTTP, an SQL
// (SQLite) and a gRPC fixture under a little load, its OTLP exporter
// pointed at a closed port: every dashboard query returns data, every rule
// evaluates without error, the export-failure alert fires (its condition
// is made here), and the other alerts' expressions, without their
// threshold, return data (their loss is not made here: that they name
// series that exist is what a renamed metric would break).
func TestDashboardAndAlerts(t *testing.T) {
	for _, bin := range []string{"prometheus", "promtool"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is not installed (apt-get install prometheus): scripts/test-setup.sh installs it", bin)
		}
	}
	dir, err := os.MkdirTemp(workDir, "dashboard-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	newestGo := toolchains[len(toolchains)-1].toolchain
	var targets []*target
	var cfg strings.Builder
	cfg.WriteString("selectors:\n")
	for _, f := range []struct {
		dir, set string
		args     []string
	}{
		{"fixture", "http", []string{"."}},
		{"sqlite", "sql", []string{"."}},
		{"grpc", "grpc", []string{"-modfile=go.v185.mod", "."}},
	} {
		src, _ := filepath.Abs(filepath.Join("testdata", f.dir))
		exe := filepath.Join(dir, "red-"+f.set)
		if err := goBuild(src, exe, newestGo, f.args...); err != nil {
			t.Fatal(err)
		}
		targets = append(targets, startTarget(t, exe))
		fmt.Fprintf(&cfg, "  - name: %s\n    exe: %s\n    builtin: [%s]\n", f.set, exe, f.set)
	}
	cfgFile := filepath.Join(dir, "daemon.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	// Nothing listens on closed: every export fails.
	closed := freePort(t)
	d := startDaemon(t, cfgFile, nil, "--exporter", "otlp", "--otlp-protocol", "http/protobuf",
		"--otlp-endpoint", fmt.Sprintf("http://127.0.0.1:%d", closed))
	if !d.waitReady(t) {
		t.Fatalf("daemon exited:\n%s", d.log())
	}
	waitFor(t, "the daemon to trace the three fixtures", func() bool {
		return scrape(t, d.metrics, "tcagent_daemon_processes_traced") == 3
	})

	rules, err := filepath.Abs("../deploy/prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	prom := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	promCfg := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(promCfg, []byte(fmt.Sprintf(`
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: tcagent
    static_configs: [{targets: [%q]}]
`, rules, d.metrics)), 0o644)
	pcmd := exec.Command("prometheus", "--config.file="+promCfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+prom)
	plog := &lockedBuffer{}
	pcmd.Stdout, pcmd.Stderr = plog, plog
	if err := pcmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { pcmd.Process.Kill(); pcmd.Wait() }()

	pending := dashboardExprs(t)
	alerts := alertRules(t)
	if len(pending) == 0 || len(alerts) == 0 {
		t.Fatal("no dashboard queries or no alert rules read")
	}
	for name, expr := range alerts {
		if name == "TcagentExportFailing" {
			pending["alert "+name] = expr // made to hold here
			continue
		}
		bare := threshold.ReplaceAllString(expr, "")
		if bare == expr {
			t.Errorf("alert %s: no threshold to take off %q", name, expr)
		}
		pending["alert "+name+" without its threshold"] = bare
	}
	// Load and queries go on together until every query has returned data
	// once: a deadline no working run comes near, and no assertion on
	// time.
	lastErr := map[string]error{}
	deadline := time.Now().Add(4 * time.Minute)
	for len(pending) > 0 && time.Now().Before(deadline) {
		targets[0].run(t, "http")
		targets[1].run(t, "sql")
		targets[2].run(t, "check")
		for what, q := range pending {
			n, err := promResults(prom, q)
			lastErr[what] = err
			if err == nil && n > 0 {
				delete(pending, what)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	for what, q := range pending {
		t.Errorf("%s returned no data (%v): %s", what, lastErr[what], q)
	}

	// Every rule as Prometheus evaluates it: no error, and the export
	// failure alert pending or firing.
	var exportState string
	waitFor(t, "the rules evaluated and TcagentExportFailing active", func() bool {
		resp, err := http.Get("http://" + prom + "/api/v1/rules")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Groups []struct {
					Rules []struct{ Name, Health, LastError, State string }
				}
			}
		}
		if json.NewDecoder(resp.Body).Decode(&r) != nil || len(r.Data.Groups) == 0 {
			return false
		}
		seen := 0
		for _, g := range r.Data.Groups {
			for _, rule := range g.Rules {
				if rule.Health == "unknown" {
					return false
				}
				if rule.Health != "ok" {
					t.Errorf("rule %s: health %s: %s", rule.Name, rule.Health, rule.LastError)
				}
				if rule.Name == "TcagentExportFailing" {
					exportState = rule.State
				}
				seen++
			}
		}
		if seen != len(alerts) {
			t.Fatalf("Prometheus loaded %d rules, the file has %d", seen, len(alerts))
		}
		return exportState == "pending" || exportState == "firing"
	})
	if t.Failed() {
		t.Logf("prometheus:\n%s\ndaemon:\n%s", plog.String(), d.log())
	}
	d.stop(t)
}
