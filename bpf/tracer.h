// SPDX-License-Identifier: (MIT OR GPL-2.0)
//
// The layout shared by the BPF programs and the Go decoder (reader/record.go; the sizes bpf/layout.go checks).
// Change both together; bpf's tests compare the sizes.
#ifndef TCAGENT_TRACER_H
#define TCAGENT_TRACER_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

// The user registers as the kernel hands them to uprobe programs, per
// target architecture (bpf2go defines __TARGET_ARCH_*), and the registers
// of Go's internal ABI in them: the integer argument/result registers in
// assignment order (ABI_REG(ctx, i), i < ABI_REGS, a constant), the current
// goroutine (G_REG) and the stack pointer (SP_REG). Only this block knows
// the architecture. CHECK_TAKEN(ctx) says, for a probe on the stack
// check's branch to morestack (COOKIE_ON_CHECK), whether the flags the
// check set take it.
#if defined(__TARGET_ARCH_arm64)
// arm64: struct user_pt_regs. Go's ABI: integers in R0-R15, g in R28.
struct pt_regs {
	unsigned long regs[31];
	unsigned long sp, pc, pstate;
};
#define ABI_REGS 16
#define ABI_REG(ctx, i) ((ctx)->regs[i])
#define G_REG(ctx) ((ctx)->regs[28])
#define SP_REG(ctx) ((ctx)->sp)
// B.LS ("lower or same"): taken when C is clear or Z set (PSTATE bits 29, 30).
#define CHECK_TAKEN(ctx) (!(((ctx)->pstate >> 29) & 1) || (((ctx)->pstate >> 30) & 1))
#elif defined(__TARGET_ARCH_x86)
// x86-64. Go's ABI: integers in RAX, RBX, RCX, RDI, RSI, R8-R11; g in R14.
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	unsigned long ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};
#define ABI_REGS 9
#define ABI_REG(ctx, i)                                                                                 \
	((i) == 0 ? (ctx)->ax : (i) == 1 ? (ctx)->bx : (i) == 2 ? (ctx)->cx : (i) == 3 ? (ctx)->di :    \
	 (i) == 4 ? (ctx)->si : (i) == 5 ? (ctx)->r8 : (i) == 6 ? (ctx)->r9 : (i) == 7 ? (ctx)->r10 : (ctx)->r11)
#define G_REG(ctx) ((ctx)->r14)
#define SP_REG(ctx) ((ctx)->sp)
// No amd64 probe sits on the check's branch (its entry is the PUSHQ BP
// after it, which the kernel emulates).
#define CHECK_TAKEN(ctx) 0
#else
#error "tcagent's BPF programs support x86 and arm64 targets only"
#endif

#define MAX_PROBES 4096
// A link's cookie is the probe id (low 32 bits) and, for an entry site on
// the stack check's branch, this bit: the program drops a hit whose branch
// goes to morestack (CHECK_TAKEN), the prologue's run that morestack
// repeats.
#define COOKIE_ON_CHECK (1ULL << 32)
#define MAX_CAPS 8
// A capture's base register beyond the ABI's (on every architecture): the
// stack pointer, for values Go's ABI passes on the stack (at a function's
// entry or RET, the first stack-assigned argument or result is at SP+8 on
// amd64, where SP points at the return address, and on arm64, where 0(SP)
// is the caller's saved-LR slot).
#define REG_SP 31
#define MAX_HDRS 8
#define STR_SLOTS 4
#define STR_SLOT_SIZE 256

enum event_kind {
	EV_START = 1,
	EV_END = 2,
	// Reserved for goroutine lineage and panics.
	EV_GO_CREATE = 3,
	EV_GO_EXIT = 4,
	EV_PANIC = 5,
};

enum capture_kind {
	CAP_REG = 1,    // one integer register
	CAP_STRING = 2, // reg = pointer, reg2 = length
	CAP_ERROR = 3,  // reg = itab, reg2 = data word
	CAP_EFACE = 4,  // reg = type, reg2 = data word (an any, as gopanic's argument)
	CAP_PATH = 5,   // a field reached from reg through pointer hops: see struct capture
	CAP_MAPSTR = 6, // the first string of recipe->keys[reg2] in a map[string][]string reached as a
			// CAP_PATH pointer; size: the map layout (MAP_CLASSIC or MAP_SWISS)
	CAP_TRACE = 7,  // --propagate: the span's trace context, made here (see trace_start); reg: 1 +
			// the index of a capture holding an incoming traceparent (0: none), slot: its
			// string slot; reg2: TRACE_* flags
	CAP_HDRS = 8,   // the value of the first header whose key is recipe->keys[reg2] among the first
			// MAX_HDRS of a slice of {Key, Value} headers, the slice header reached as a
			// CAP_PATH string would be (nhops <= 1); off[2]: the bytes between headers, off[3]:
			// the value's offset in one; size 8: the slice holds pointers to the headers, 8
			// bytes apart, and off[2] may be a second hop (nhops <= 2).
			// Keys and values may be strings or byte slices: both start with (ptr, len)
};

enum trace_flags {
	TRACE_OUTGOING = 1, // a client span whose request may carry its context out
};

enum map_layout {
	MAP_CLASSIC = 1, // runtime.hmap, Go 1.23 and older
	MAP_SWISS = 2,   // internal/runtime/maps.Map, Go 1.24 and newer
};

#define MAX_KEY 16
#define MAX_KEYS 4

// CAP_PATH bases above the ABI registers: values saved at entry.
#define BASE_SAVED 16
#define MAX_SAVED 2
#define MAX_HOPS 3

enum recipe_flags {
	RECIPE_DEDUP = 1,       // entry probe at offset 0: drop prologue re-runs
	RECIPE_ENTRY_IS_RET = 2, // the entry instruction is a RET: start and end in one hit
	RECIPE_TRACE = 4,       // --propagate: the call opens a span whose trace context is made here
	RECIPE_INJECT = 8,      // --propagate: net/http's (*persistConn).roundTrip, see inject
	RECIPE_ADOPT = 16,      // --propagate: the program's OpenTelemetry SDK starts a span, see adopt
	RECIPE_CREATOR = 32,    // runtime.newproc1 of Go 1.19/1.20 (no g.parentGoid): the creator's goid
				// was saved at its entry, see tc_go_create_entry
	RECIPE_PIE = 64,        // a position-independent executable's: its type addresses need the
				// process's load bias (pid_val.bias)
};

enum counter {
	COUNTER_RINGBUF_FULL = 0,
	COUNTER_READ_G_FAILED = 1,
	COUNTER_UNMATCHED_RETURN = 2,
	COUNTER_DEDUP = 3,
	COUNTER_CALLS_EVICTED = 4,
	// --propagate, per outgoing HTTP/1 request: handed to the socket
	// programs, or not because of TLS, a traceparent already set, or no
	// TCP connection to key it by.
	COUNTER_PROP_REQUESTS = 5,
	COUNTER_PROP_TLS = 6,
	COUNTER_PROP_PRESENT = 7,
	COUNTER_PROP_NO_CONN = 8,
	// Of the requests handed over, by the socket programs (propagate.c):
	// injected, or sent unchanged as not an HTTP/1.x request line, or as the
	// header could not be added.
	COUNTER_PROP_INJECTED = 9,
	COUNTER_PROP_NOT_HTTP1 = 10,
	COUNTER_PROP_NO_ROOM = 11,
	// Handed over but on a connection the socket programs never saw open
	// (opened before they were attached): sent unchanged.
	COUNTER_PROP_UNTRACKED = 12,
	// A client span that sent nothing over an HTTP/1 connection (HTTP/2, a
	// RoundTripper of the program's own, or it failed before connecting).
	COUNTER_PROP_NOT_SENT = 13,
	// A server span whose request carried no trace context, matched by its
	// connection to the client span that sent it.
	COUNTER_PROP_MATCHED = 14,
	// Goroutine creations and exits not sent: the goroutine carries no
	// span (see marked in tracer.c). A saving, not a loss.
	COUNTER_GO_UNMARKED = 15,
	// Goroutines that could not be marked (the map was full): their
	// children's creations are then not sent, so they lose their lineage.
	COUNTER_MARKS_FULL = 16,
	COUNTER_MAX = 18,
};

// One loaded set of programs serves every executable an agent traces (the
// daemon's whole node, or attach's one process): each executable's probes
// hold a range of probe ids (attach cookies) in recipes, and the programs
// serve only the processes userspace admitted (pids), each for the probes
// of its executable's range, counting per process.
#define MAX_SLOTS 1024

enum pid_state {
	// Traced: its events go out for the probes in [lo, hi); its counters
	// are its slot's.
	PID_TRACED = 1,
	// Not traced: its hits do nothing.
	PID_IGNORED = 2,
};

struct pid_val {
	__u32 state;
	__u32 slot;
	// The probe ids of the executable it is traced for: the hits of
	// another executable's probes in it (a file two selectors attach to)
	// do nothing.
	__u32 lo, hi;
	// What the process added to its executable's link addresses (ASLR of
	// a position-independent executable): recipes hold link addresses,
	// so that the processes of one executable share its probes.
	__u64 bias;
};

// The trace context of a span, as --propagate makes it in the kernel so
// that a request can carry it before userspace has seen the span.
struct trace_ctx {
	__u64 trace_hi, trace_lo; // trace id, big-endian halves
	__u64 span;               // span id, big-endian
	__u64 depth;              // the owning call's depth; 0: inherited from the creating goroutine
	__u64 flags;              // W3C trace flags, and TRACE_SEEN
};

// In trace_ctx.flags of an outgoing client span: its request reached
// net/http's HTTP/1 connection code (inject).
#define TRACE_SEEN (1 << 8)
// In trace_ctx.flags of a goroutine's trace: made here, for no caller's
// context, and not yet given up for the program's own (adopt).
#define TRACE_OWN (1 << 9)

// A TCP connection, as both the uprobe (from Go's net.TCPConn) and the
// socket programs see it.
struct conn_key {
	__u32 lport;
	__u32 rport;
};

// A CAP_PATH capture starts from the value of reg (a register, or
// BASE_SAVED+i: the i-th value saved at the call's entry), follows nhops
// pointers (addr = *(addr + off[i])), then reads at addr + off[nhops]:
// size bytes of an integer, or a string header (size 0) and its bytes.
struct capture {
	__u8 kind;
	__u8 reg;
	__u8 reg2;
	__u8 slot;
	__u16 max_len;
	__u8 nhops;
	__u8 size;
	__u16 off[MAX_HOPS + 1];
};

// A chain reads the 8-byte integer at the end of a path of up to
// MAX_CHAIN pointer hops from register reg (addr = *(addr + off[i]), then
// the value at addr + off[nhops]): --propagate's way to a connection's
// ports, deeper than a capture goes.
#define MAX_CHAIN 6
struct chain {
	__u8 reg;
	__u8 nhops;
	__u16 off[MAX_CHAIN + 1];
};

// The chains of a recipe (--propagate) lead to a connection: a client
// request's (RECIPE_INJECT) or the one a server span serves. The type of
// the connection (an itab's type), then its local and remote ports as a
// *net.TCPConn, then as a *tls.Conn over one.
enum {
	CHAIN_CONN_TYPE = 0,
	CHAIN_TCP_LPORT = 1,
	CHAIN_TCP_RPORT = 2,
	CHAIN_TLS_LPORT = 3,
	CHAIN_TLS_RPORT = 4,
	MAX_CHAINS = 5,
};

struct recipe {
	__u32 flags;
	__u16 goid_off;
	__u16 stack_hi_off;
	__u16 parent_goid_off;
	__u16 _pad0;
	__u8 n_entry;
	__u8 n_ret;
	__u8 entry_strings;
	__u8 ret_strings;
	// Registers saved at entry for the return's CAP_PATH captures.
	__u8 nsave;
	__u8 save[MAX_SAVED];
	__u8 _pad1;
	// The keys of CAP_MAPSTR captures, zero-padded; a capture names one by
	// its index in reg2.
	__u8 key_len[MAX_KEYS];
	__u64 keys[MAX_KEYS][2];
	struct capture entry[MAX_CAPS];
	struct capture ret[MAX_CAPS];
	// The type descriptor (its link address: the process adds its
	// pid_val.bias) that the value a probe reads must have: *net.TCPConn for a connection (RECIPE_INJECT,
	// a server's chains), the SDK's *trace.recordingSpan for RECIPE_ADOPT's
	// span; 0: unknown, and the probe does nothing. tls_type: *tls.Conn.
	__u64 want_type;
	__u64 tls_type;
	__u8 nchains;
	__u8 _pad2[7];
	struct chain chains[MAX_CHAINS];
};

struct value {
	__u64 a;
	__u64 b;
	__u64 c;
	__u64 d;
};

struct event {
	__u64 ts;
	__u64 goid;
	__u64 depth;
	__u32 probe;
	__u32 pid;
	__u32 tid;
	// How many events of this goroutine were lost before this one: a
	// change tells userspace that what it knows of the goroutine is stale.
	__u32 lost;
	__u16 kind;
	__u8 ncaps;
	__u8 big;
	// Per value: bit i of failed is set when reading value i failed, of nil
	// when a nil pointer was met on its path.
	__u8 failed;
	__u8 nil;
	// With a CAP_TRACE: the W3C trace flags of the span's trace.
	__u16 tflags;
	struct value vals[MAX_CAPS];
};

struct event_big {
	struct event ev;
	char str[STR_SLOTS][STR_SLOT_SIZE];
};

#endif
