package builtin

import (
	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/probes"
)

const goRedis = "github.com/redis/go-redis/v9"

// The roles and capture keys of the redis set: its span side
// (binder/semconv/redis.go) reads the captures under these keys, and says
// what its errors mean (redis.Nil is none).
const (
	RoleRedis         = "redis"          // one command
	RoleRedisPipeline = "redis.pipeline" // processPipeline
	RoleRedisMulti    = "redis.multi"    // processTxPipeline

	RedisCommand  = "command"  // the command's name
	RedisArgc     = "argc"     // its argument count, the name included
	RedisCommands = "commands" // a pipeline's command count
	RedisAddr     = "addr"
)

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
	for _, m := range []struct{ method, role string }{
		{"process", RoleRedis}, {"processPipeline", RoleRedisPipeline}, {"processTxPipeline", RoleRedisMulti},
	} {
		p, ok, err := probes.NewProbe(b, goRedis+".(*baseClient)."+m.method, id+uint32(len(out)), rt)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if m.role == RoleRedis {
			// Every command's args start with its name, an interface
			// holding a string: args[0]'s data word points at it.
			capture(p, false, RedisCommand, field(redisCmdData, 0, f.args, 8, 0))
			capture(p, false, RedisArgc, field(redisCmdData, 8, f.args+8))
		} else {
			p.Recipe.Entry = append(p.Recipe.Entry, bpf.Capture{Kind: bpf.CapReg, Reg: redisCmdsLen})
			p.EntryAttrs = append(p.EntryAttrs, probes.CapturedAttr{Key: RedisCommands, Type: "int", Size: 8})
		}
		capture(p, false, RedisAddr, field(redisClient, 0, f.opt, f.addr))
		p.ErrorCapture = len(p.Recipe.Return)
		p.Recipe.Return = append(p.Recipe.Return, bpf.Capture{Kind: bpf.CapError, Reg: redisErrItab, Reg2: redisErrData, MaxLen: bpf.StringSlotSize})
		p.Spec.Name = "redis"
		p.Role = probes.Role{Kind: probes.RoleSemconv, Name: m.role}
		out = append(out, p)
	}
	return out, nil
}
