package builtin

import (
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/channel"
	"github.com/tcagent/tcagent/probes"
)

const goRedis = "github.com/redis/go-redis/v9"

// The go-redis v9 methods traced, with their registers under Go's ABI:
// (*baseClient).process(ctx, cmd Cmder) error — c in RAX, ctx in RBX and
// RCX, cmd's itab and data in RDI and RSI; the error in RAX and RBX.
// (*baseClient).processPipeline and processTxPipeline(ctx, cmds []Cmder)
// error — the commands' slice in RDI, RSI (its length) and R8.
const (
	redisClient, redisCmdData, redisCmdsLen = 0, 4, 4
	redisErrItab, redisErrData              = 0, 1
)

func redisProbes(b *probes.Binary, o *offsets, _ Options, rt probes.Runtime, id uint32) ([]*probes.Probe, error) {
	if _, ok := b.Func(goRedis + ".(*baseClient).process"); !ok {
		return nil, nil // go-redis v9 is not used
	}
	var f struct{ args, opt, addr uint16 }
	if err := o.mustAll(
		fieldOffset{&f.args, goRedis + ".baseCmd.args"}, fieldOffset{&f.opt, goRedis + ".baseClient.opt"}, fieldOffset{&f.addr, goRedis + ".Options.Addr"},
	); err != nil {
		return nil, err
	}
	var out []*probes.Probe
	for _, m := range []struct{ method, name string }{
		{"process", ""}, {"processPipeline", "PIPELINE"}, {"processTxPipeline", "MULTI"},
	} {
		p, ok, err := probes.NewProbe(b, goRedis+".(*baseClient)."+m.method, id+uint32(len(out)), rt)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if m.name == "" {
			// Every command's args start with its name, an interface
			// holding a string: args[0]'s data word points at it.
			capture(p, false, "command", field(redisCmdData, 0, f.args, 8, 0))
			capture(p, false, "argc", field(redisCmdData, 8, f.args+8))
		} else {
			p.Recipe.Entry = append(p.Recipe.Entry, bpf.Capture{Kind: bpf.CapReg, Reg: redisCmdsLen})
			p.EntryAttrs = append(p.EntryAttrs, probes.CapturedAttr{Key: "commands", Type: "int", Size: 8})
		}
		capture(p, false, "addr", field(redisClient, 0, f.opt, f.addr))
		p.ErrorCapture = len(p.Recipe.Return)
		p.Recipe.Return = append(p.Recipe.Return, bpf.Capture{Kind: bpf.CapError, Reg: redisErrItab, Reg2: redisErrData, MaxLen: bpf.StringSlotSize})
		// redis.Nil reports a missing key, not a failure.
		p.ErrorOf = func(e *channel.Error, _ []attribute.KeyValue) error {
			if e.Type == "proto.RedisError" && e.Message == "redis: nil" {
				return nil
			}
			return e
		}
		p.Spec.Name, p.Spec.Kind, p.Shape = "redis", "client", redisShape{fixed: m.name}
		out = append(out, p)
	}
	return out, nil
}

type redisShape struct{ fixed string }

func (s redisShape) Start(p *channel.Payload) (string, trace.SpanKind, []attribute.KeyValue) {
	r := raw(p.Attributes)
	op := s.fixed
	text := op
	if op == "" {
		name, _ := r.str("command")
		op = strings.ToUpper(name)
		// The command and its argument count: values stay in the process.
		argc, _ := r.int("argc")
		text = op + strings.Repeat(" ?", max(int(argc)-1, 0))
	} else if n, ok := r.int("commands"); ok {
		text = op + " " + strconv.FormatInt(n, 10) + " commands"
	}
	attrs := []attribute.KeyValue{attribute.String("db.system.name", "redis"), attribute.String("db.operation.name", op),
		attribute.String("db.query.text", text)}
	if a, ok := r.str("addr"); ok && a != "" {
		host, port := hostPort(a, 6379)
		attrs = append(attrs, attribute.String("server.address", host), attribute.Int("server.port", port))
	}
	return op, trace.SpanKindClient, attrs
}

func (redisShape) End(span trace.Span, p *channel.Payload) {
	if e, ok := p.Err().(*channel.Error); ok && p.HasError() {
		span.SetAttributes(attribute.String("error.type", e.Type))
	}
}
