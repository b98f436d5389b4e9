package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"testing"
)

// TestAlertRules: promtool, Prometheus' own checker, accepts the rules.
// kernel-tests/dashboard_test.go evaluates them on a live agent.
func TestAlertRules(t *testing.T) {
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Fatal("promtool is not installed (apt-get install prometheus): scripts/test-setup.sh installs it")
	}
	if out, err := exec.Command("promtool", "check", "rules", "prometheus/alerts.yaml").CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
}

// TestDashboardShape: every panel but a row queries the dashboard's
// Prometheus data source, and has at least one expression.
// kernel-tests/dashboard_test.go evaluates the expressions.
func TestDashboardShape(t *testing.T) {
	data, err := os.ReadFile("grafana/tcagent.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string
		Panels []struct {
			Type, Title string
			Datasource  struct{ Type, UID string }
			Targets     []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("grafana/tcagent.json: %v", err)
	}
	if d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("no uid or no panels")
	}
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: data source %+v, want the dashboard's Prometheus", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			if q.Expr == "" {
				t.Errorf("panel %q: an empty query", p.Title)
			}
		}
	}
}
