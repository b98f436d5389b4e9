package builtin

import (
	"strings"

	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/probes"
)

// The roles and capture keys of the sql set: its span side
// (binder/semconv/sql.go) reads the captures under these keys.
const (
	RoleSQLQuery    = "db.query" // statements; Role.Arg is the db.query.text mode
	RoleSQLBegin    = "db.begin"
	RoleSQLCommit   = "db.commit"
	RoleSQLRollback = "db.rollback"

	SQLQuery         = "query"
	SQLConnectorType = "connector_type" // the DB's connector's type word
	SQLDriverType    = "driver_type"    // a dsnConnector's driver's type word
	SQLTxDone        = "tx_done"        // Tx.done at a rollback's entry
)

// The methods of database/sql traced, all shaped
// (recv, ctx context.Context, query string, args ...any):
// recv in RAX, ctx in RBX and RCX, the query in RDI and RSI.
// QueryContext returns (*Rows, error): the rows in RAX, the error in RBX
// and RCX; ExecContext returns (Result, error): the result in RAX and RBX,
// the error in RCX and RDI.
var (
	sqlQueries = []string{"database/sql.(*DB).QueryContext", "database/sql.(*Tx).QueryContext", "database/sql.(*Conn).QueryContext"}
	sqlExecs   = []string{"database/sql.(*DB).ExecContext", "database/sql.(*Tx).ExecContext", "database/sql.(*Conn).ExecContext"}
)

const (
	sqlQueryPtr, sqlQueryLen = 3, 4
	rowsClose                = "database/sql.(*Rows).Close"
	rowsCloseInner           = "database/sql.(*Rows).close"
)

func sqlProbes(b *probes.Binary, o *offsets, opts Options, rt probes.Runtime, id uint32) ([]*probes.Probe, error) {
	if _, ok := b.Func("database/sql.(*DB).ExecContext"); !ok {
		return nil, nil // database/sql is not used
	}
	// The driver's type needs struct offsets; without them (a stripped
	// binary of a release the table does not know) the statements are still
	// traced, and the driver module names the database.
	var f struct{ connector, driver, txDB, connDB uint16 }
	err := o.mustAll(
		fieldOffset{&f.connector, "database/sql.DB.connector"}, fieldOffset{&f.driver, "database/sql.dsnConnector.driver"},
		fieldOffset{&f.txDB, "database/sql.Tx.db"},
	)
	// *sql.Conn is linked in only when the program uses it: without it,
	// no (*Conn) method is probed.
	hasConn := false
	if err == nil {
		var off int64
		off, hasConn, err = o.get("database/sql.Conn.db")
		f.connDB = uint16(off)
	}
	typed := err == nil
	if !typed {
		o.partial = "db.system.name from the driver module linked in, not from each statement's driver: " + err.Error()
	}
	// The driver's type names the database: the DB's connector (an
	// interface) and, for sql.Open's dsnConnector, its driver. From a *Tx or
	// *Conn receiver, through its db field first.
	driverTypes := func(p *probes.Probe, symbol string) {
		if !typed {
			return
		}
		var hops []uint16
		switch {
		case strings.Contains(symbol, "(*Tx)"):
			hops = []uint16{f.txDB}
		case strings.Contains(symbol, "(*Conn)"):
			if !hasConn {
				return
			}
			hops = []uint16{f.connDB}
		}
		// itab at connector, its _type at 8; the data word at connector+8
		// points to the dsnConnector, whose driver's itab is at f.driver.
		capture(p, false, SQLConnectorType, field(0, 8, append(append([]uint16{}, hops...), f.connector, 8)...))
		capture(p, false, SQLDriverType, field(0, 8, append(append([]uint16{}, hops...), f.connector+8, f.driver, 8)...))
	}
	var out []*probes.Probe
	var closer *probes.Probe
	add := func(symbol string, query bool) error {
		p, ok, err := probes.NewProbe(b, symbol, id+uint32(len(out)), rt)
		if err != nil || !ok {
			return err
		}
		p.Recipe.Entry = append(p.Recipe.Entry, bpf.Capture{Kind: bpf.CapString, Reg: sqlQueryPtr, Reg2: sqlQueryLen, MaxLen: bpf.StringSlotSize})
		p.EntryAttrs = append(p.EntryAttrs, probes.CapturedAttr{Key: SQLQuery, Type: "string", MaxLen: bpf.StringSlotSize})
		driverTypes(p, symbol)
		errRegs := [2]uint8{2, 3} // ExecContext: (Result, error)
		if query {
			errRegs = [2]uint8{1, 2}
		}
		p.ErrorCapture = len(p.Recipe.Return)
		p.Recipe.Return = append(p.Recipe.Return, bpf.Capture{Kind: bpf.CapError, Reg: errRegs[0], Reg2: errRegs[1], MaxLen: bpf.StringSlotSize})
		if query {
			// The query's span lasts until its rows are closed.
			p.HandleCapture = len(p.Recipe.Return)
			p.Recipe.Return = append(p.Recipe.Return, bpf.Capture{Kind: bpf.CapReg, Reg: 0})
			p.Spec.Async = &probes.Async{Completion: closer.Spec.Symbol, Handle: "result0"}
			p.Completion = closer
		}
		p.Spec.Name = "db.query"
		p.Role = probes.Role{Kind: probes.RoleSemconv, Name: RoleSQLQuery, Arg: opts.SQLQueryText}
		out = append(out, p)
		return nil
	}
	for _, s := range sqlExecs {
		if err := add(s, false); err != nil {
			return nil, err
		}
	}
	// Transactions: BeginTx(ctx, opts) (*Tx, error) on *DB and *Conn (the
	// error in RBX and RCX), Commit() error (in RAX and RBX).
	for _, t := range []struct {
		symbol, role string
		errRegs      []uint8
	}{
		{"database/sql.(*DB).BeginTx", RoleSQLBegin, []uint8{1, 2}},
		{"database/sql.(*Conn).BeginTx", RoleSQLBegin, []uint8{1, 2}},
		{"database/sql.(*Tx).Commit", RoleSQLCommit, []uint8{0, 1}},
	} {
		p, ok, err := probes.NewProbe(b, t.symbol, id+uint32(len(out)), rt)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		p.ErrorCapture = 0
		p.Recipe.Return = []bpf.Capture{{Kind: bpf.CapError, Reg: t.errRegs[0], Reg2: t.errRegs[1], MaxLen: bpf.StringSlotSize}}
		driverTypes(p, t.symbol)
		p.Spec.Name = t.role
		p.Role = probes.Role{Kind: probes.RoleSemconv, Name: t.role}
		out = append(out, p)
	}
	p, err := rollbackProbe(b, o, id+uint32(len(out)), rt)
	if err != nil {
		return nil, err
	}
	if p != nil {
		driverTypes(p, sqlRollback)
		out = append(out, p)
	}
	// (*Rows).Close(rs *Rows) error: the receiver in RAX, the error in RAX
	// and RBX. In Go 1.19 and 1.20 Close is only `return rs.close(nil)`,
	// which the compiler inlines into its callers (Row.Scan, the program's
	// own code): there the call to follow is (*Rows).close(err error) error,
	// which every way of closing goes through, with the same registers.
	closeSym := rowsClose
	if _, ok := b.Func("database/sql.(*Rows).closemuRUnlockIfHeldByScan"); !ok {
		if _, ok := b.Func(rowsCloseInner); ok {
			closeSym = rowsCloseInner
		}
	}
	if hasFunc(b, closeSym) {
		c, err := probes.CompileCompletion(b, closeSym, rt, &probes.ErrorFrom{Regs: [2]uint8{0, 1}})
		if err != nil {
			return nil, err
		}
		closer = c
		for _, s := range sqlQueries {
			if err := add(s, true); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// sqlRollback is the function every rollback of a transaction runs.
const sqlRollback = "database/sql.(*Tx).rollback"

// rollbackProbe probes (*Tx).rollback(discardConn bool) error, the receiver
// in RAX, nil when the binary has none or tx.done's offset is unknown (the
// reason then goes in the set's note). (*Tx).Rollback is a one-line wrapper
// of it that the compiler inlines into every caller, deferred calls too: its
// out-of-line copy never runs. rollback also runs for the rollbacks that do
// nothing: awaitDone's, the goroutine BeginTx starts, which rolls back when
// the transaction's context ends, as Commit and Rollback make it; and a
// `defer tx.Rollback()` after a Commit. Each returns sql.ErrTxDone at once,
// tx.done being already set: the entry reads tx.done, and the span side opens
// no span for a done transaction. awaitDone's rollback of a transaction
// still open when its context ends (cancelled, timed out) is a real one:
// its span is a child of the BEGIN span, which awaitDone's goroutine
// inherits from BeginTx.
//
// The error is not read: awaitDone's rollback returns driver.ErrBadConn,
// whatever the driver answered, whenever it discards the connection (a
// driver that cannot reset sessions), which is no failure; and whether the
// call was awaitDone's is known at entry (discardConn), not where the error
// is read.
func rollbackProbe(b *probes.Binary, o *offsets, id uint32, rt probes.Runtime) (*probes.Probe, error) {
	if _, ok := b.Func(sqlRollback); !ok {
		return nil, nil
	}
	done, err := o.must("database/sql.Tx.done")
	if err != nil {
		o.note("no ROLLBACK spans (whether a rollback does anything is read from database/sql.Tx.done): " + err.Error())
		return nil, nil
	}
	p, ok, err := probes.NewProbe(b, sqlRollback, id, rt)
	if err != nil || !ok {
		return nil, err
	}
	// done is an atomic.Bool (an int32 before Go 1.20): a uint32 at its
	// offset, 0 or 1.
	capture(p, false, SQLTxDone, field(0, 4, done))
	p.Spec.Name = RoleSQLRollback
	p.Role = probes.Role{Kind: probes.RoleSemconv, Name: RoleSQLRollback}
	return p, nil
}
