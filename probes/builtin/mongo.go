package builtin

import (
	"unicode"
	"unicode/utf8"

	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/probes"
)

// The MongoDB Go drivers: v1 and v2 are different modules, and a program
// may link both.
var mongoDrivers = []string{"go.mongodb.org/mongo-driver", "go.mongodb.org/mongo-driver/v2"}

// The roles and capture keys of the mongo set: its span side
// (binder/semconv/mongo.go) reads the captures under these keys.
const (
	// RoleMongo is one operation's span; Role.Arg is its command name
	// ("find"), "" for the generic (*Command) operation, named only by
	// the command it sends.
	RoleMongo = "mongo"
	// RoleMongoCommand enriches the operation's span with the command it
	// sends; Role.Arg is the db.query.text mode.
	RoleMongoCommand = "mongo.command"

	// RoleMongoServer puts the server a command is written to on the
	// operation's span.
	RoleMongoServer = "mongo.server"

	MongoCommand  = "command"  // the command's name, as the driver read it
	MongoDocument = "document" // the command document's first bytes (BSON)
	MongoDatabase = "database"
	MongoServer   = "server" // the connection's address, host:port

	// The returned error's details, read as each error type the driver
	// returns would hold them: the span side trusts the pair the error's
	// type names.
	MongoErrorCode         = "error_code"          // driver.Error.Code
	MongoErrorMessage      = "error_message"       // driver.Error.Message
	MongoWriteErrorCode    = "write_error_code"    // driver.WriteCommandError.WriteErrors[0].Code
	MongoWriteErrorMessage = "write_error_message" // … .Message
	// MongoErrorType is the Go type of an error a call left in a struct
	// rather than returned (a getMore's in the cursor, RunCommand's in
	// its SingleResult): MongoErrorCode and MongoErrorMessage are then
	// read as a driver.Error's or a mongo.CommandError's.
	MongoErrorType = "error_type"
)

// mongoOperations are the driver's operation types a program's calls go
// through, by their type name in x/mongo/driver/operation, and the command
// each sends. (*Hello) is left out: the driver's own handshakes and
// heartbeats, no call of the program's.
var mongoOperations = []struct{ typ, command string }{
	{"Find", "find"}, {"Insert", "insert"}, {"Update", "update"}, {"Delete", "delete"},
	{"Aggregate", "aggregate"}, {"Count", "count"}, {"Distinct", "distinct"}, {"FindAndModify", "findAndModify"},
	{"Command", ""}, // RunCommand: any command
	{"CreateIndexes", "createIndexes"}, {"DropIndexes", "dropIndexes"}, {"ListIndexes", "listIndexes"},
	{"Create", "create"}, {"DropCollection", "drop"}, {"DropDatabase", "dropDatabase"},
	{"ListCollections", "listCollections"}, {"ListDatabases", "listDatabases"},
	{"CommitTransaction", "commitTransaction"}, {"AbortTransaction", "abortTransaction"},
	{"CreateSearchIndexes", "createSearchIndexes"}, {"DropSearchIndex", "dropSearchIndex"}, {"UpdateSearchIndex", "updateSearchIndex"},
}

// operationSymbols are where a driver release keeps operation typ's
// method that runs it, all shaped func(op *T, ctx context.Context) error:
// x/mongo/driver/operation.(*Find).Execute (v1, v2.8), or, as v2 moves them
// into the mongo package, mongo.(*findOp).Execute (v2.8's insert and
// update) and mongo.(*findOp).execute (v2.10).
func operationSymbols(mod, typ string) []string {
	r, n := utf8.DecodeRuneInString(typ)
	unexported := string(unicode.ToLower(r)) + typ[n:] + "Op"
	return []string{
		mod + "/x/mongo/driver/operation.(*" + typ + ").Execute",
		mod + "/mongo.(*" + unexported + ").Execute",
		mod + "/mongo.(*" + unexported + ").execute",
	}
}

// Registers under Go's ABI: an operation's Execute(ctx) error returns the
// error in RAX and RBX. (*Operation).redactCommand(cmd string, doc
// bsoncore.Document) bool gets the operation in RAX, cmd in RBX and RCX,
// doc in RDI, RSI and R8.
const (
	mongoErrItab, mongoErrData = 0, 1
	mongoOp                    = 0
	mongoCmdPtr, mongoCmdLen   = 1, 2
	mongoDocPtr, mongoDocLen   = 3, 4
)

// mongoProbes traces each operation of the program's MongoDB clients, v1
// and v2: a span per operation, from its Execute's entry to its return
// (server selection, every attempt and the reply's processing included),
// with the error it returns. Execute(ctx) receives the operation
// (driver.Operation) by value, on the stack, out of a probe's reach; and
// its command is built only after the server is chosen. So the command is
// read inside: every attempt calls (*Operation).redactCommand(cmd, doc),
// out of line in every release served, with the command's name and its
// document, right before sending it; its probe (an enricher) puts them on
// the operation's span, and so does one on the connection's write, with the
// server's address. Per operation, three entries (emulated) and three RETs
// (single-stepped: no direct CALL follows any of them in one fixed caller).
func mongoProbes(b *probes.Binary, o *offsets, opts Options, rt probes.Runtime, id uint32) ([]*probes.Probe, error) {
	var out []*probes.Probe
	for _, mod := range mongoDrivers {
		driver := mod + "/x/mongo/driver"
		redact := driver + ".(*Operation).redactCommand"
		if !hasFunc(b, redact) {
			continue // this driver is not used
		}
		var f mongoErrorFields
		database, err := o.must(driver + ".Operation.Database")
		if err == nil {
			err = o.mustAll(
				fieldOffset{&f.code, driver + ".Error.Code"}, fieldOffset{&f.message, driver + ".Error.Message"},
				fieldOffset{&f.writeErrors, driver + ".WriteCommandError.WriteErrors"},
				fieldOffset{&f.weCode, driver + ".WriteError.Code"}, fieldOffset{&f.weMessage, driver + ".WriteError.Message"},
			)
		}
		if err != nil {
			return nil, err
		}
		first := len(out)
		for _, op := range mongoOperations {
			for _, symbol := range operationSymbols(mod, op.typ) {
				p, ok, err := probes.NewProbe(b, symbol, id+uint32(len(out)), rt)
				if err != nil {
					return nil, err
				}
				if !ok {
					continue
				}
				returnedError(p, f)
				p.Spec.Name = "mongodb"
				p.Role = probes.Role{Kind: probes.RoleSemconv, Name: RoleMongo, Arg: op.command}
				out = append(out, p)
			}
		}
		cursors, err := mongoCursorProbes(b, o, driver, f, id+uint32(len(out)), rt)
		if err != nil {
			return nil, err
		}
		out = append(out, cursors...)
		if p, err := runCommandProbe(b, o, mod, id+uint32(len(out)), rt); err != nil {
			return nil, err
		} else if p != nil {
			out = append(out, p)
		}
		if len(out) == first {
			continue // no operation linked in: nothing to enrich
		}
		p, ok, err := probes.NewProbe(b, redact, id+uint32(len(out)), rt)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue // never: redact is there
		}
		p.Recipe.Entry = append(p.Recipe.Entry, bpf.Capture{Kind: bpf.CapString, Reg: mongoCmdPtr, Reg2: mongoCmdLen, MaxLen: bpf.StringSlotSize})
		p.EntryAttrs = append(p.EntryAttrs, probes.CapturedAttr{Key: MongoCommand, Type: "string", MaxLen: bpf.StringSlotSize})
		// The document is BSON, bytes as they are: its first 256, the
		// command's name and arguments first, the driver's own fields
		// (session, cluster time, $db) after them.
		p.Recipe.Entry = append(p.Recipe.Entry, bpf.Capture{Kind: bpf.CapString, Reg: mongoDocPtr, Reg2: mongoDocLen, MaxLen: bpf.StringSlotSize, Slot: 1})
		p.EntryAttrs = append(p.EntryAttrs, probes.CapturedAttr{Key: MongoDocument, Type: "bytes", MaxLen: bpf.StringSlotSize})
		capture(p, false, MongoDatabase, field(mongoOp, 0, database))
		p.Spec.Name = RoleMongoCommand
		p.Role = probes.Role{Kind: probes.RoleEnrich, Name: RoleMongoCommand, Arg: opts.SQLQueryText}
		out = append(out, p)
		if p, err = mongoServerProbe(b, o, driver, id+uint32(len(out)), rt); err != nil {
			return nil, err
		}
		if p != nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// mongoErrorFields are where the driver's errors hold the server's code
// and message.
type mongoErrorFields struct{ code, message, writeErrors, weCode, weMessage uint16 }

// returnedError captures the error a call returns in RAX and RBX: its data
// word points at a driver.Error or a driver.WriteCommandError (whose
// WriteErrors' first element holds the server's code and message). Both
// layouts are read; the error's type says which one holds.
func returnedError(p *probes.Probe, f mongoErrorFields) {
	p.ErrorCapture = len(p.Recipe.Return)
	p.Recipe.Return = append(p.Recipe.Return, bpf.Capture{Kind: bpf.CapError, Reg: mongoErrItab, Reg2: mongoErrData, MaxLen: bpf.StringSlotSize})
	capture(p, true, MongoErrorCode, field(mongoErrData, 4, f.code))
	capture(p, true, MongoErrorMessage, field(mongoErrData, 0, f.message))
	capture(p, true, MongoWriteErrorCode, field(mongoErrData, 8, f.writeErrors, f.weCode))
	capture(p, true, MongoWriteErrorMessage, field(mongoErrData, 0, f.writeErrors, f.weMessage))
}

// runCommandProbe probes mongo.(*Database).RunCommand(ctx, cmd any, opts
// ...) *SingleResult where it runs its command with no operation type (from
// v2.9 on; before, its (*Command).Execute is the span, and this would nest
// a second one): the database in RAX, the result in RAX at return, its
// error kept in SingleResult.err, a mongo.CommandError for the server's
// failure. Nil when the binary has no such call, or its offsets are
// unknown (the set's note then says so).
func runCommandProbe(b *probes.Binary, o *offsets, mod string, id uint32, rt probes.Runtime) (*probes.Probe, error) {
	symbol := mod + "/mongo.(*Database).RunCommand"
	if !hasFunc(b, symbol) || hasFunc(b, mod+"/x/mongo/driver/operation.(*Command).Execute") {
		return nil, nil
	}
	var f struct{ err, code, message uint16 }
	if err := o.mustAll(
		fieldOffset{&f.err, mod + "/mongo.SingleResult.err"},
		fieldOffset{&f.code, mod + "/mongo.CommandError.Code"}, fieldOffset{&f.message, mod + "/mongo.CommandError.Message"},
	); err != nil {
		o.note("no RunCommand spans: " + err.Error())
		return nil, nil
	}
	p, ok, err := probes.NewProbe(b, symbol, id, rt)
	if err != nil || !ok {
		return nil, err
	}
	const result = 0
	capture(p, true, MongoErrorType, field(result, 8, f.err, 8))
	capture(p, true, MongoErrorCode, field(result, 4, f.err+8, f.code))
	capture(p, true, MongoErrorMessage, field(result, 0, f.err+8, f.message))
	p.Spec.Name = "mongodb"
	p.Role = probes.Role{Kind: probes.RoleSemconv, Name: RoleMongo}
	return p, nil
}

// mongoServerProbe probes (*connection).writeWireMessage(ctx, wm []byte)
// error, every message written to a server, the connection in RAX: its
// address is the server's, put on the operation's span (an enricher). Nil
// when the binary has none, or the address's offset is unknown (the set's
// note then says so).
func mongoServerProbe(b *probes.Binary, o *offsets, driver string, id uint32, rt probes.Runtime) (*probes.Probe, error) {
	symbol := driver + "/topology.(*connection).writeWireMessage"
	if !hasFunc(b, symbol) {
		return nil, nil
	}
	addr, err := o.must(driver + "/topology.connection.addr")
	if err != nil {
		o.note("no server.address: " + err.Error())
		return nil, nil
	}
	p, ok, err := probes.NewProbe(b, symbol, id, rt)
	if err != nil || !ok {
		return nil, err
	}
	capture(p, false, MongoServer, field(mongoOp, 0, addr))
	p.Spec.Name = RoleMongoServer
	p.Role = probes.Role{Kind: probes.RoleEnrich, Name: RoleMongoServer}
	return p, nil
}
