package semconv

import (
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/probes"
	"github.com/tcagent/tcagent/probes/builtin"
)

// mongoShape opens an operation's span. Named at first by its command
// ("find"), or "mongodb" for RunCommand's, whose command is known only when
// sent: the command's enricher (mongoEnricher) renames it
// "{db.operation.name} {db.collection.name}" once it is.
type mongoShape struct {
	command  string
	typeName func(uint64) string
}

func (s mongoShape) Start(p *channel.Payload) (string, trace.SpanKind, []attribute.KeyValue) {
	if !sendsCursorCommand(raw(p.Attributes)) {
		return "", 0, nil
	}
	attrs := []attribute.KeyValue{attribute.String("db.system.name", "mongodb")}
	if s.command == "" {
		return "mongodb", trace.SpanKindClient, attrs
	}
	return s.command, trace.SpanKindClient, append(attrs, attribute.String("db.operation.name", s.command))
}

func (s mongoShape) End(span trace.Span, p *channel.Payload) {
	errorType(span, p)
	if e, ok := p.Err().(*mongoError); ok && p.HasError() {
		span.SetAttributes(attribute.String("db.response.status_code", strconv.FormatInt(e.code, 10)))
	}
	s.keptError(span, raw(p.EndAttributes))
}

// sendsCursorCommand says whether a cursor's getMore or KillCursor (their
// probes read the cursor at entry) sends a command: not for a cursor the
// server closed (id 0), and getMore not once the cursor's limit is reached
// (it closes the cursor instead), as calcGetMoreBatchSize decides. Other
// operations always do.
func sendsCursorCommand(r raw) bool {
	if id, ok := r.int(builtin.MongoCursorID); ok && id == 0 {
		return false
	}
	limit, ok := r.int(builtin.MongoCursorLimit)
	if !ok {
		return true
	}
	returned, _ := r.int(builtin.MongoCursorReturned)
	batch, _ := r.int(builtin.MongoCursorBatch)
	return !(limit != 0 && returned+batch >= limit && limit-returned <= 0)
}

// keptError sets the status of a call that keeps its error in a struct (a
// getMore's in its cursor, RunCommand's in its SingleResult): a
// driver.Error's or mongo.CommandError's message and code, any other's Go
// type.
func (s mongoShape) keptError(span trace.Span, r raw) {
	typ, ok := r.int(builtin.MongoErrorType)
	if !ok || typ == 0 || s.typeName == nil {
		return
	}
	name := s.typeName(uint64(typ))
	if name == "" {
		name = "error"
	}
	msg := name
	if name == "driver.Error" || name == "mongo.CommandError" {
		if m, ok := r.str(builtin.MongoErrorMessage); ok {
			msg = m
		}
		if code, ok := r.int(builtin.MongoErrorCode); ok {
			span.SetAttributes(attribute.String("db.response.status_code", strconv.FormatInt(code, 10)))
		}
	}
	span.SetStatus(codes.Error, msg)
	span.SetAttributes(attribute.String("error.type", name))
}

// mongoError is a failure the server reported: its code and message.
type mongoError struct {
	typ  string
	code int64
	msg  string
}

func (e *mongoError) Error() string    { return e.msg }
func (e *mongoError) TypeName() string { return e.typ }

// mongoErrorOf gives a driver.Error (a command's failure) or a
// driver.WriteCommandError (a write's, its first write error) the server's
// code and message; any other error is as the program returned it.
func mongoErrorOf(e *channel.Error, ret []attribute.KeyValue) error {
	codeKey, msgKey := builtin.MongoErrorCode, builtin.MongoErrorMessage
	switch e.Type {
	case "driver.Error":
	case "driver.WriteCommandError":
		codeKey, msgKey = builtin.MongoWriteErrorCode, builtin.MongoWriteErrorMessage
	default:
		return e
	}
	r := raw(ret)
	code, okCode := r.int(codeKey)
	msg, okMsg := r.str(msgKey)
	if !okCode || !okMsg {
		return e // a write concern error, or a read that failed
	}
	return &mongoError{typ: e.Type, code: code, msg: msg}
}

// collectionCommands are the commands whose value, first in the command
// document, names a collection.
var collectionCommands = map[string]bool{
	"find": true, "insert": true, "update": true, "delete": true, "aggregate": true, "count": true, "distinct": true,
	"findAndModify": true, "createIndexes": true, "dropIndexes": true, "listIndexes": true, "create": true, "drop": true,
	"collMod": true, "killCursors": true, "validate": true, "mapReduce": true, "collStats": true,
	"createSearchIndexes": true, "dropSearchIndex": true, "updateSearchIndex": true,
}

// sensitiveCommands are those whose documents the driver itself never
// shows its command monitors (credentials): their text is never exported.
// A hello may carry credentials too (speculative authentication).
var sensitiveCommands = map[string]bool{
	"authenticate": true, "saslStart": true, "saslContinue": true, "getnonce": true, "createUser": true, "updateUser": true,
	"copydbgetnonce": true, "copydbsaslstart": true, "copydb": true, "hello": true, "isMaster": true, "ismaster": true,
}

// handshakeCommands open a new connection, before the command it was
// opened for: they are never RunCommand's own.
var handshakeCommands = map[string]bool{
	"hello": true, "isMaster": true, "ismaster": true, "saslStart": true, "saslContinue": true, "authenticate": true, "getnonce": true,
}

// capturedDocument is the command document's bytes as captured: at most
// a string slot's, to which the reader appended "…" when the document was
// longer (its length, first in it, says so too).
func capturedDocument(r raw) []byte {
	doc, _ := r.str(builtin.MongoDocument)
	if len(doc) > bpf.StringSlotSize {
		doc = strings.TrimSuffix(doc, probes.TruncatedSuffix)
	}
	return []byte(doc)
}

// isMongo says whether span is a mongo operation's: the enrichers touch
// no other (an HTTP server span under which the driver sends a command of
// no operation, a cursor's getMore).
func isMongo(span trace.Span) (op string, ok bool) {
	ro, isSDK := span.(sdktrace.ReadOnlySpan)
	if !isSDK {
		return "", false
	}
	for _, a := range ro.Attributes() {
		switch a.Key {
		case "db.system.name":
			ok = a.Value.AsString() == "mongodb"
		case "db.operation.name":
			op = a.Value.AsString()
		}
	}
	return op, ok
}

// enrichMongoServer puts the server a command is written to on its
// operation's span: the address of the connection, host:port (a Unix
// socket's path).
func enrichMongoServer(span trace.Span, p *channel.Payload) {
	addr, ok := raw(p.Attributes).str(builtin.MongoServer)
	if _, mongo := isMongo(span); !mongo || !ok || addr == "" {
		return
	}
	if strings.HasPrefix(addr, "/") {
		span.SetAttributes(attribute.String("server.address", addr))
		return
	}
	host, port := hostPort(addr, 27017)
	span.SetAttributes(attribute.String("server.address", host), attribute.Int("server.port", port))
}

// mongoEnricher puts the command an operation sends on its span.
type mongoEnricher struct {
	text string // sanitized, full or none
}

// enrich runs as the driver is about to send a command, on the goroutine
// of the operation that sends it: the active span is that operation's. An
// operation sends its
// own command, once per attempt; RunCommand's may be anything but a
// connection's handshake and authentication, sent before it.
func (m mongoEnricher) enrich(span trace.Span, p *channel.Payload) {
	op, ok := isMongo(span)
	if !ok {
		return
	}
	r := raw(p.Attributes)
	doc := capturedDocument(r)
	cmd, ok := r.str(builtin.MongoCommand)
	if !ok {
		if cmd, _, ok = MongoCommandOf(doc); !ok {
			return
		}
	}
	if op != "" && cmd != op || op == "" && handshakeCommands[cmd] {
		return
	}
	attrs := []attribute.KeyValue{attribute.String("db.operation.name", cmd)}
	target := cmd
	if db, ok := r.str(builtin.MongoDatabase); ok && db != "" {
		attrs = append(attrs, attribute.String("db.namespace", db))
		target = cmd + " " + db
	} else if u, ok := r.unreadable(builtin.MongoDatabase, "db.namespace"); ok {
		attrs = append(attrs, u)
	}
	name, value, _ := MongoCommandOf(doc)
	if cmd == "getMore" {
		value, _ = MongoLookupString(doc, "collection") // its value is the cursor's id
	}
	if name == cmd && value != "" && (collectionCommands[cmd] || cmd == "getMore") {
		attrs = append(attrs, attribute.String("db.collection.name", value))
		target = cmd + " " + value
	}
	if m.text != "none" && !sensitiveCommands[cmd] {
		if u, ok := r.unreadable(builtin.MongoDocument, "db.query.text"); ok {
			attrs = append(attrs, u)
		} else if text, err := MongoQueryText(doc, m.text == "full", collectionCommands[cmd]); err != nil {
			attrs = append(attrs, attribute.String("db.query.text.unreadable", err.Error()))
		} else {
			attrs = append(attrs, attribute.String("db.query.text", text))
		}
	}
	span.SetAttributes(attrs...)
	span.SetName(target)
}
