package semconv

import "testing"

func TestSanitizeSQL(t *testing.T) {
	cases := []struct{ in, want string }{
		{"SELECT 1", "SELECT ?"},
		{"SELECT * FROM users WHERE name = 'alice' AND id = 42", "SELECT * FROM users WHERE name = ? AND id = ?"},
		{"SELECT 'it''s', 'a''''b'", "SELECT ?, ?"},
		{`SELECT E'a\'b\\', 'c'`, "SELECT ?, ?"},
		{"SELECT $$a 'quoted' $ value$$, $tag$x$$y$tag$ FROM t", "SELECT ?, ? FROM t"},
		{"SELECT * FROM t1 JOIN t2 ON t1.id = t2.id WHERE c3 > 10.5e-3", "SELECT * FROM t1 JOIN t2 ON t1.id = t2.id WHERE c3 > ?"},
		{"INSERT INTO items VALUES ($1, $2), ($3, $4)", "INSERT INTO items VALUES ($1, $2), ($3, $4)"},
		{"SELECT * FROM t WHERE a = ? AND b = :name AND c = @p1", "SELECT * FROM t WHERE a = ? AND b = :name AND c = @p1"},
		{"SELECT \"weird 'col' 7\" FROM `tbl 9`", "SELECT \"weird 'col' 7\" FROM `tbl 9`"},
		{"SELECT 1 -- password 'hunter2'\nFROM t /* card 4111 */ WHERE x = .5", "SELECT ? FROM t WHERE x = ?"},
		{"SELECT X'deadbeef', B'0101', N'unicode', 0x1F", "SELECT ?, ?, ?, ?"},
		{"SELECT col_2, 'unterminated", "SELECT col_2, ?"},
		{"UPDATE accounts SET balance = -100 WHERE iban = 'DE89 3704'", "UPDATE accounts SET balance = -? WHERE iban = ?"},
		{"SELECT price*2 FROM t", "SELECT price*? FROM t"},
	}
	for _, c := range cases {
		if got := SanitizeSQL(c.in); got != c.want {
			t.Errorf("SanitizeSQL(%q)\n got  %q\n want %q", c.in, got, c.want)
		}
	}
}

func TestSystemOf(t *testing.T) {
	for typ, want := range map[string]string{
		"*pq.Driver": "postgresql", "*sqlite.Driver": "sqlite", "*stdlib.Driver": "postgresql",
		"*mysql.MySQLDriver": "mysql", "sql.dsnConnector": "", "*foo.Driver": "", "": "",
	} {
		if got := systemOf(typ); got != want {
			t.Errorf("systemOf(%q) = %q, want %q", typ, got, want)
		}
	}
}
