package semconv

import (
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/probes"
	"github.com/tcagent/tcagent/probes/builtin"
)

// driverPackages maps the package name in a driver's (or connector's) type,
// as the runtime names it ("*pq.Driver"), to db.system.name.
var driverPackages = map[string]string{
	"pq": "postgresql", "pgx": "postgresql", "stdlib": "postgresql", "pgconn": "postgresql",
	"mysql": "mysql", "sqlite": "sqlite", "sqlite3": "sqlite", "mssql": "microsoft.sql_server",
	"go_ora": "oracle.db", "clickhouse": "clickhouse",
}

// systemOf names the database of a driver type name, "" when unknown.
func systemOf(typeName string) string {
	name := strings.TrimLeft(typeName, "*")
	if i := strings.IndexByte(name, '.'); i > 0 {
		return driverPackages[name[:i]]
	}
	return ""
}

// drivers maps driver modules to db.system.name: the fallback when the
// driver's type says nothing.
var drivers = map[string]string{
	"github.com/lib/pq":                      "postgresql",
	"github.com/jackc/pgx/v4":                "postgresql",
	"github.com/jackc/pgx/v5":                "postgresql",
	"github.com/go-sql-driver/mysql":         "mysql",
	"github.com/mattn/go-sqlite3":            "sqlite",
	"modernc.org/sqlite":                     "sqlite",
	"github.com/microsoft/go-mssqldb":        "microsoft.sql_server",
	"github.com/denisenkomd/go-mssqldb":      "microsoft.sql_server",
	"github.com/sijms/go-ora/v2":             "oracle.db",
	"github.com/ClickHouse/clickhouse-go/v2": "clickhouse",
}

// dbSystem names the database from the driver module the binary links, or
// other_sql when it links none it knows, or several.
func dbSystem(b *probes.Binary) string {
	system := ""
	for _, m := range b.Modules {
		s, ok := drivers[m.Path]
		if !ok {
			continue
		}
		if system != "" && system != s {
			return "other_sql"
		}
		system = s
	}
	if system == "" {
		return "other_sql"
	}
	return system
}

var sqlOperations = map[string]bool{"SELECT": true, "INSERT": true, "UPDATE": true, "DELETE": true, "CREATE": true,
	"DROP": true, "ALTER": true, "BEGIN": true, "COMMIT": true, "ROLLBACK": true, "WITH": true, "MERGE": true,
	"TRUNCATE": true, "CALL": true, "EXPLAIN": true, "GRANT": true, "REVOKE": true, "SET": true, "SHOW": true, "COPY": true}

// sqlShape shapes statements (op empty: named by the statement) and
// transaction calls (op set).
type sqlShape struct {
	system   string // from the modules, when the driver's type says nothing
	op       string
	text     string // sanitized, full or none
	typeName func(uint64) string
	// rollback: the call opens no span unless its transaction was not done
	// yet at entry (see rollbackProbe in probes/builtin/sql.go).
	rollback bool
}

// dbSystem names the database from the driver's type read at the call.
func (s *sqlShape) dbSystem(r raw) string {
	connector, ok := r.int(builtin.SQLConnectorType)
	if !ok {
		return s.system
	}
	name := s.typeName(uint64(connector))
	if strings.HasSuffix(name, ".dsnConnector") {
		driver, _ := r.int(builtin.SQLDriverType)
		name = s.typeName(uint64(driver))
	}
	if sys := systemOf(name); sys != "" {
		return sys
	}
	return s.system
}

func (s *sqlShape) Start(p *channel.Payload) (string, trace.SpanKind, []attribute.KeyValue) {
	if s.rollback && !rollsBack(raw(p.Attributes)) {
		return "", 0, nil
	}
	system := s.dbSystem(raw(p.Attributes))
	attrs := []attribute.KeyValue{attribute.String("db.system.name", system)}
	if s.op != "" {
		return s.op, trace.SpanKindClient, append(attrs, attribute.String("db.operation.name", s.op))
	}
	if u, ok := raw(p.Attributes).unreadable(builtin.SQLQuery, "db.query.text"); ok {
		return system, trace.SpanKindClient, append(attrs, u)
	}
	q, _ := raw(p.Attributes).str(builtin.SQLQuery)
	switch s.text {
	case "sanitized":
		attrs = append(attrs, attribute.String("db.query.text", SanitizeSQL(q)))
	case "full":
		attrs = append(attrs, attribute.String("db.query.text", q))
	}
	name := system
	if f := strings.Fields(q); len(f) > 0 {
		if op := strings.ToUpper(f[0]); sqlOperations[op] {
			attrs = append(attrs, attribute.String("db.operation.name", op))
			name = op
		}
	}
	return name, trace.SpanKindClient, attrs
}

// rollsBack says whether a rollback will roll its transaction back: tx.done
// read as false at entry. A done transaction's rollback, or one whose
// tx.done could not be read, is no span: a ROLLBACK that did nothing would
// be wrong data. (Two rollbacks of one transaction that race, the program's
// and awaitDone's as its context ends, may both read false at entry: both
// get a span, though only the one that sets tx.done first rolls back.)
func rollsBack(r raw) bool {
	done, ok := r.int(builtin.SQLTxDone)
	return ok && done == 0
}

func (s *sqlShape) End(span trace.Span, p *channel.Payload) { errorType(span, p) }
