package builtin

import (
	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/probes"
)

// The capture keys of a cursor's probes (mongoCursorProbes).
const (
	MongoCursorID       = "cursor_id"    // BatchCursor.id: 0 once the server closed it
	MongoCursorLimit    = "cursor_limit" // .limit, .numReturned, .batchSize
	MongoCursorReturned = "cursor_returned"
	MongoCursorBatch    = "cursor_batch"
)

// mongoCursorProbes traces a cursor's own commands, which the driver sends
// with no operation type: (*BatchCursor).getMore(ctx), which fetches the
// next batch and keeps its error in bc.err, and KillCursor(ctx) error,
// which closes a cursor the server still holds. Both receive the cursor in
// RAX and do nothing for a cursor the server closed (id 0); getMore closes
// the cursor instead once its limit is reached: the span side opens no span
// for those calls, from the fields read at entry. Nil, and the reason in
// the set's note, when the cursor's offsets are unknown.
func mongoCursorProbes(b *probes.Binary, o *offsets, driver string, f mongoErrorFields, id uint32, rt probes.Runtime) ([]*probes.Probe, error) {
	getMore, kill := driver+".(*BatchCursor).getMore", driver+".(*BatchCursor).KillCursor"
	if !hasFunc(b, getMore) && !hasFunc(b, kill) {
		return nil, nil
	}
	var c struct{ id, err, limit, returned, batch uint16 }
	if err := o.mustAll(
		fieldOffset{&c.id, driver + ".BatchCursor.id"}, fieldOffset{&c.err, driver + ".BatchCursor.err"},
		fieldOffset{&c.limit, driver + ".BatchCursor.limit"}, fieldOffset{&c.returned, driver + ".BatchCursor.numReturned"},
		fieldOffset{&c.batch, driver + ".BatchCursor.batchSize"},
	); err != nil {
		o.note("no getMore or killCursors spans: " + err.Error())
		return nil, nil
	}
	var out []*probes.Probe
	for _, symbol := range []string{getMore, kill} {
		p, ok, err := probes.NewProbe(b, symbol, id+uint32(len(out)), rt)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		capture(p, false, MongoCursorID, field(mongoOp, 8, c.id))
		command := "killCursors"
		if symbol == getMore {
			command = "getMore"
			capture(p, false, MongoCursorLimit, field(mongoOp, 4, c.limit))
			capture(p, false, MongoCursorReturned, field(mongoOp, 4, c.returned))
			capture(p, false, MongoCursorBatch, field(mongoOp, 4, c.batch))
			// bc.err at return, from the cursor kept at entry: its
			// itab's type, and a driver.Error's code and message
			// behind its data word.
			p.Recipe.Save = []uint8{mongoOp}
			bc := uint8(bpf.BaseSaved)
			capture(p, true, MongoErrorType, field(bc, 8, c.err, 8))
			capture(p, true, MongoErrorCode, field(bc, 4, c.err+8, f.code))
			capture(p, true, MongoErrorMessage, field(bc, 0, c.err+8, f.message))
		} else {
			returnedError(p, f)
		}
		p.Spec.Name = "mongodb"
		p.Role = probes.Role{Kind: probes.RoleSemconv, Name: RoleMongo, Arg: command}
		out = append(out, p)
	}
	return out, nil
}
