package kerneltests

import (
	"slices"
	"sort"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"

	"github.com/tcagent/tcagent/agent"
	"github.com/tcagent/tcagent/probes"
	"github.com/tcagent/tcagent/probes/builtin"
)

// TestBuiltinSQLRollback, on every build of the SQLite fixture: a direct
// tx.Rollback() is a ROLLBACK span (the compiler inlines Rollback into its
// caller: the set probes the (*Tx).rollback it wraps); the `defer
// tx.Rollback()` after a commit, and the rollback database/sql's awaitDone
// goroutine runs after every commit or rollback, do nothing and are no
// span; awaitDone's rollback of a transaction whose context was cancelled
// is one, a child of that transaction's BEGIN (BeginTx starts the
// goroutine, which inherits its span).
func TestBuiltinSQLRollback(t *testing.T) {
	forEachBuildOf(t, "sqlite", func(t *testing.T, b build) {
		tg := startTarget(t, b.path)
		ss := attachWith(t, tg.pid(), "", func(c *agent.Config) { c.Builtin = []string{"sql"} })
		tg.run(t, "sql")
		tg.run(t, "rollback")
		// The fixture answers once every rollback has returned; a
		// statement after them, once traced, says the agent has read
		// their events too.
		tg.run(t, "sql")
		waitFor(t, "the second UPDATE span", func() bool { return len(named(ss.rec.Ended(), "UPDATE")) == 2 })
		spans := ss.stop(t)
		begins := named(spans, "BEGIN")
		sort.Slice(begins, func(i, j int) bool { return begins[i].StartTime().Before(begins[j].StartTime()) })
		rollbacks := named(spans, "ROLLBACK")
		if len(begins) != 5 || len(rollbacks) != 2 {
			t.Fatalf("%d BEGIN and %d ROLLBACK spans, want 5 and 2: %s", len(begins), len(rollbacks), spanNames(spans))
		}
		sort.Slice(rollbacks, func(i, j int) bool { return rollbacks[i].StartTime().Before(rollbacks[j].StartTime()) })
		for _, s := range rollbacks {
			a := attrs(s)
			if s.SpanKind().String() != "client" || a["db.operation.name"] != "ROLLBACK" || a["db.system.name"] != "sqlite" ||
				s.Status().Code != codes.Unset || a["error.type"] != nil {
				t.Errorf("ROLLBACK span: kind %v, status %v, attributes %v", s.SpanKind(), s.Status(), a)
			}
		}
		// "rollback" begins the second to fourth transactions: the second
		// it rolls back itself, the fourth's context it cancels.
		if direct := rollbacks[0]; direct.Parent().IsValid() || direct.StartTime().Before(begins[1].StartTime()) || !direct.StartTime().Before(begins[2].StartTime()) {
			t.Errorf("the direct ROLLBACK: parent %v, at %v, want a root between the second and third BEGIN", direct.Parent().SpanID(), direct.StartTime())
		}
		if cancelled, begin := rollbacks[1], begins[3]; !isChildOf(cancelled, begin) {
			t.Errorf("awaitDone's ROLLBACK: parent %v, want the fourth BEGIN %v", cancelled.Parent().SpanID(), begin.SpanContext().SpanID())
		}
	})
}

// TestSQLRollbackNeverGuessed: a stripped binary of a release the offsets
// table does not know gets no rollback probe (whether a rollback does
// anything needs tx.done's offset), said in the set's note; the set
// applies otherwise. Of a release the table knows, tx.done comes from it.
func TestSQLRollbackNeverGuessed(t *testing.T) {
	var b build
	for _, x := range fixturesOf(t, "sqlite") {
		if x.stripped && x.pie {
			b = x
		}
	}
	bin, err := probes.Open(b.path)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	rt, err := bin.Runtime()
	if err != nil {
		t.Fatal(err)
	}
	resolve := func() (bool, builtin.Report) {
		ps, reports, err := builtin.Resolve(bin, []string{"sql"}, builtin.Options{}, rt, 0)
		if err != nil || len(reports) != 1 {
			t.Fatalf("reports %+v, %v", reports, err)
		}
		probed := false
		for _, p := range ps {
			probed = probed || p.Spec.Symbol == "database/sql.(*Tx).rollback"
		}
		return probed, reports[0]
	}
	if probed, r := resolve(); !probed || !r.Applied || r.Offsets["database/sql.Tx.done"] != "table ("+b.release+")" {
		t.Errorf("%s: rollback probed %v, report %+v", b.name, probed, r)
	}
	bin.GoVersion = "go1.99.1"
	probed, r := resolve()
	if probed || !r.Applied || !strings.Contains(r.Reason, "no ROLLBACK spans") || !strings.Contains(r.Reason, "not in the offsets table") {
		t.Errorf("go1.99.1: rollback probed %v, report %+v", probed, r)
	}
	for _, p := range []string{"database/sql.(*DB).BeginTx", "database/sql.(*Tx).Commit"} {
		if !slices.Contains(r.Probes, p) {
			t.Errorf("go1.99.1: %s not probed: %v", p, r.Probes)
		}
	}
}
