//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0)
//
// tcagent's generic probe programs. One entry program and one return program
// serve every probed function: what to capture comes from the recipe map,
// indexed by the attach cookie (the probe id). Go's register ABI puts integer
// arguments and results in RAX, RBX, RCX, RDI, RSI, R8-R11 and the current
// goroutine's g in R14 on amd64 (R0-R15 and R28 on arm64; the register names
// below are amd64's, tracer.h maps them per architecture).
//
// Calls are keyed by (goroutine id, depth), where depth is the distance from
// the goroutine's stack top (g.stack.hi) to SP. Go copies stacks when they
// grow, so absolute SPs move; the distance from the top does not, and the
// entry probe (placed after the stack check, or at offset 0) and the RET
// probes see the same SP: the one pointing at the return address (arm64:
// the caller's frame, whose 0(SP) slot is where the callee saves LR).

#include "propagate.h"

char __license[] SEC("license") = "Dual MIT/GPL";

// Ring buffer fill, in bytes, above which a submit wakes the reader. Below it
// the reader polls on a short timer: a wakeup per event costs more than the
// uprobe itself on a VM. Set at load time.
volatile const __u64 wakeup_bytes = 2 << 20;

// --propagate: a trace made here is sampled when the upper 63 bits of its
// id's second half are below this bound, the rule of OpenTelemetry's
// TraceIDRatioBased sampler, so that the flag a request carries out is the
// decision the agent's sampler takes for the root span (1 << 63: always).
volatile const __u64 sample_bound = 1ULL << 63;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_PROBES);
	__type(key, __u32);
	__type(value, struct recipe);
} recipes SEC(".maps");

// Goroutine ids repeat from process to process: every goroutine's state is
// keyed by its process too, since one set of programs may serve several.
struct call_key {
	__u64 goid;
	__u64 depth;
	__u64 tgid;
};

struct gkey {
	__u64 goid;
	__u64 tgid;
};

struct call_val {
	__u32 probe;
	__u32 _pad;
	__u64 saved[MAX_SAVED];
};

// Open calls. LRU so that calls whose RET is never seen (a panic unwinds
// frames without RET) cannot fill it up; userspace ends such calls itself.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct call_key);
	__type(value, struct call_val);
} calls SEC(".maps");

// Events lost per goroutine (LRU: only recently active goroutines matter).
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct gkey);
	__type(value, __u32);
} lost SEC(".maps");

// The processes the programs serve, by tgid (see struct pid_val). Written
// by userspace only: not preallocated, its memory follows the processes.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4 * MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct pid_val);
} pids SEC(".maps");

// Counters, COUNTER_MAX per slot: the process's; slot 0 counts the hits
// in processes not admitted yet.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX * MAX_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

// --propagate: the trace context of each goroutine (the trace its spans
// belong to, owned by the outermost open span or inherited at creation),
// and the client span each goroutine is sending a request for; the maps
// shared with the socket programs are in propagate.h.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct gkey);
	__type(value, struct trace_ctx);
} gtrace SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct gkey);
	__type(value, struct trace_ctx);
} outgoing SEC(".maps");

// The goroutines that may carry a span in userspace, which alone need
// their creation and exit sent: one a traced call started on (tc_entry),
// or one such a goroutine created. Userspace ignores the creation by, and
// the exit of, any other goroutine (nothing to inherit, nothing open), so
// the hot `go` statement of a goroutine outside any span sends nothing and
// wakes no one. A mark stays until the goroutine exits, or its process
// (Tracer.ForgetPID). Not LRU: a live mark evicted would lose lineage
// silently; a full map is counted (COUNTER_MARKS_FULL) instead. Not
// preallocated: 131,072 marks would lock about 10 MiB of kernel memory per
// loaded tracer whether used or not; entries are allocated as goroutines
// are marked (bpf_mem_alloc, safe in tracing programs since Linux 6.1).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 131072);
	__type(key, struct gkey);
	__type(value, __u8);
} marked SEC(".maps");

// Only here so that bpf2go emits Go types for them.
const struct event *unused_event __attribute__((unused));
const struct recipe *unused_recipe __attribute__((unused));

static __always_inline __u32 current_tgid(void)
{
	return bpf_get_current_pid_tgid() >> 32;
}

// admitted says whether a hit of probe in the current process is to be
// followed: when userspace admitted the process for the probes of this
// executable, or has not decided yet (its first events then tell userspace
// of it, so that a process is traced from its exec on). The links of
// attach's one process have a PID filter besides.
static __always_inline int admitted(__u32 probe)
{
	__u32 tgid = current_tgid();
	struct pid_val *v = bpf_map_lookup_elem(&pids, &tgid);
	return !v || (v->state == PID_TRACED && probe >= v->lo && probe < v->hi);
}

// bias_of reads what the current process adds to the link addresses of
// r's executable: 0 unless it is position-independent; -1 for a process
// of one not admitted yet, whose type addresses cannot be told.
static __always_inline int bias_of(const struct recipe *r, __u64 *bias)
{
	*bias = 0;
	if (!(r->flags & RECIPE_PIE))
		return 0;
	__u32 tgid = current_tgid();
	struct pid_val *v = bpf_map_lookup_elem(&pids, &tgid);
	if (!v || v->state != PID_TRACED)
		return -1;
	*bias = v->bias;
	return 0;
}

static __always_inline void count(__u32 idx)
{
	__u32 slot = 0;
	__u32 tgid = current_tgid();
	struct pid_val *p = bpf_map_lookup_elem(&pids, &tgid);
	if (p && p->slot < MAX_SLOTS)
		slot = p->slot;
	__u32 k = slot * COUNTER_MAX + idx;
	__u64 *v = bpf_map_lookup_elem(&counters, &k);
	if (v)
		*v += 1;
}

static __always_inline struct gkey gkey_of(__u64 goid)
{
	struct gkey k = {.goid = goid, .tgid = current_tgid()};
	return k;
}

// mark records that goroutine k may carry a span (see marked).
static __always_inline void mark(struct gkey *k)
{
	if (bpf_map_lookup_elem(&marked, k))
		return;
	__u8 one = 1;
	if (bpf_map_update_elem(&marked, k, &one, BPF_NOEXIST) < 0 && !bpf_map_lookup_elem(&marked, k))
		count(COUNTER_MARKS_FULL);
}

// mark_goid marks goroutine goid of the current process. A global
// function: its key lives on its own stack, not on the entry program's,
// whose frame and parse_traceparent's must stay within the verifier's 512
// bytes together.
__attribute__((noinline)) int mark_goid(__u64 goid)
{
	struct gkey k = gkey_of(goid);
	mark(&k);
	return 0;
}

// The integer argument registers of Go's ABI, in assignment order, and SP,
// copied out of ctx with constant offsets (the verifier refuses ctx
// accesses at computed offsets) for captures to index.
struct abi_regs {
	__u64 r[ABI_REGS];
	__u64 sp;
	__u64 saved[MAX_SAVED]; // what the call's entry saved, at its return
};

// abi_scratch holds the one abi_regs a program uses at a time, off the
// stack: arm64's sixteen registers there took the entry program and
// map_find together over the verifier's 512 bytes. Its key 0 always
// exists; abi_regs returns NULL only to satisfy the verifier.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct abi_regs);
} abi_scratch SEC(".maps");

static __always_inline struct abi_regs *abi_regs(struct pt_regs *ctx)
{
	__u32 zero = 0;
	struct abi_regs *out = bpf_map_lookup_elem(&abi_scratch, &zero);
	if (!out)
		return 0;
#pragma unroll
	for (int i = 0; i < ABI_REGS; i++)
		out->r[i] = ABI_REG(ctx, i);
	out->sp = SP_REG(ctx);
	out->saved[0] = 0;
	out->saved[1] = 0;
	return out;
}

static __always_inline __u64 reg(const struct abi_regs *regs, __u8 i)
{
	if (i >= BASE_SAVED && i < BASE_SAVED + MAX_SAVED)
		return regs->saved[i - BASE_SAVED];
	if (i == REG_SP)
		return regs->sp;
	if (i >= ABI_REGS)
		return 0;
	return regs->r[i];
}

// read_chain reads the integer a chain (tracer.h) leads to.
static __always_inline int read_chain(const struct abi_regs *regs, const struct chain *c, __u64 *v)
{
	__u64 addr = reg(regs, c->reg);
	for (int h = 0; h < MAX_CHAIN; h++) {
		if (h >= c->nhops)
			break;
		if (addr == 0 || bpf_probe_read_user(&addr, sizeof(addr), (void *)(addr + c->off[h])) < 0)
			return -1;
	}
	if (addr == 0 || c->nhops > MAX_CHAIN)
		return -1;
	*v = 0;
	return bpf_probe_read_user(v, sizeof(*v), (void *)(addr + c->off[c->nhops]));
}

static __always_inline int read_str(char *dst, __u64 ptr, __u64 len, __u16 max)
{
	__u64 n = len;
	if (n > max)
		n = max;
	if (n > STR_SLOT_SIZE)
		n = STR_SLOT_SIZE;
	if (n == 0)
		return 0;
	return bpf_probe_read_user(dst, n, (void *)ptr);
}

// key_eq compares the string (ptr, len) with the key given as two
// zero-padded words.
static __always_inline int key_eq(__u64 ptr, __u64 len, __u64 k0, __u64 k1, __u64 klen)
{
	__u64 buf[2] = {0, 0};
	if (len != klen || len == 0)
		return 0;
	// Two checks the compiler keeps apart: it would fold them into one
	// unsigned compare of len - 17, from which the verifiers before 6.6
	// learn no bound on len.
	asm volatile("" : "+r"(len));
	if (len > MAX_KEY)
		return 0;
	if (bpf_probe_read_user(buf, len, (void *)ptr) < 0)
		return 0;
	return buf[0] == k0 && buf[1] == k1;
}

// map_find returns the address of the value of the key (k0, k1, klen) in a
// Go map[string][]string at m, 0 when it is not there or the map is too
// large to scan. A global function: the verifier checks it once, not at
// every capture.
//
// Classic maps (runtime.hmap): B at 9, buckets at 16; a bucket has 8 tophash
// bytes, 8 keys (16 bytes), 8 values (24 bytes), the overflow pointer. At
// most 4 buckets with one overflow each are scanned, which request headers
// fit. Swiss tables (internal/runtime/maps.Map): dirPtr at 16, dirLen at
// 24; a small map's dirPtr is its one group, else its one table's groups
// are at 16 in the table, with lengthMask at 24; a group has 8 control bytes
// (high bit set: empty or deleted), then 8 slots of key and value.
__attribute__((noinline)) __u64 map_find(__u64 m, __u64 layout, __u64 k0, __u64 k1, __u64 klen)
{
	if (layout == MAP_CLASSIC) {
		__u8 B = 0;
		__u64 buckets = 0;
		if (bpf_probe_read_user(&B, 1, (void *)(m + 9)) < 0 || bpf_probe_read_user(&buckets, 8, (void *)(m + 16)) < 0)
			return 0;
		if (B > 2 || !buckets)
			return 0;
		__u32 nb = 1u << B;
		for (__u32 b = 0; b < 4; b++) {
			if (b >= nb)
				break;
			__u64 bucket = buckets + b * 336;
			for (int chain = 0; chain < 2; chain++) {
				if (!bucket)
					break;
				__u8 top[8];
				if (bpf_probe_read_user(top, 8, (void *)bucket) < 0)
					return 0;
				for (int s = 0; s < 8; s++) {
					if (top[s] < 5) // empty or evacuated
						continue;
					__u64 k[2];
					if (bpf_probe_read_user(k, 16, (void *)(bucket + 8 + s * 16)) < 0)
						continue;
					if (key_eq(k[0], k[1], k0, k1, klen))
						return bucket + 8 + 128 + s * 24;
				}
				if (bpf_probe_read_user(&bucket, 8, (void *)(bucket + 8 + 128 + 192)) < 0)
					break;
			}
		}
		return 0;
	}
	__u64 dir[2] = {0, 0};
	if (bpf_probe_read_user(dir, 16, (void *)(m + 16)) < 0)
		return 0;
	__u64 groups = dir[0], ngroups = 1;
	if (dir[1] > 1)
		return 0; // several tables: a large map
	if (dir[1] == 1) {
		__u64 table = 0, ref[2] = {0, 0};
		if (bpf_probe_read_user(&table, 8, (void *)dir[0]) < 0 || bpf_probe_read_user(ref, 16, (void *)(table + 16)) < 0)
			return 0;
		groups = ref[0];
		ngroups = ref[1] + 1;
	}
	if (!groups || ngroups > 4)
		return 0;
	for (__u64 g = 0; g < 4; g++) {
		if (g >= ngroups)
			break;
		__u64 grp = groups + g * 328;
		__u64 ctrl = 0;
		if (bpf_probe_read_user(&ctrl, 8, (void *)grp) < 0)
			return 0;
		for (int s = 0; s < 8; s++) {
			if ((ctrl >> (s * 8)) & 0x80)
				continue;
			__u64 k[2];
			if (bpf_probe_read_user(k, 16, (void *)(grp + 8 + s * 40)) < 0)
				continue;
			if (key_eq(k[0], k[1], k0, k1, klen))
				return grp + 8 + s * 40 + 16;
		}
	}
	return 0;
}

// hdr_find returns the address of the first header whose key is (k0, k1,
// klen) among the first MAX_HDRS of the slice whose (ptr, len) header is at
// sl, 0 when none is. desc: the bytes between headers in its low 16 bits,
// bit 16 set when the slice holds pointers to the headers. A global
// function, as map_find.
__attribute__((noinline)) __u64 hdr_find(__u64 sl, __u64 desc, __u64 k0, __u64 k1, __u64 klen)
{
	__u64 h[2] = {0, 0};
	if (bpf_probe_read_user(h, 16, (void *)sl) < 0 || !h[0])
		return 0;
	__u64 stride = desc & 0xffff;
	for (__u64 i = 0; i < MAX_HDRS; i++) {
		if (i >= h[1])
			break;
		__u64 e = h[0] + i * stride;
		if ((desc >> 16) & 1) {
			if (bpf_probe_read_user(&e, 8, (void *)e) < 0 || !e)
				continue;
		}
		__u64 k[2];
		if (bpf_probe_read_user(k, 16, (void *)e) < 0)
			continue;
		if (key_eq(k[0], k[1], k0, k1, klen))
			return e;
	}
	return 0;
}

// Lowercase hex digits' values, -1 for every other byte: a table lookup
// keeps one verifier path per digit where range tests would fork it.
static const __s8 hextab[256] = {-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,0,1,2,3,4,5,6,7,8,9,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,10,11,12,13,14,15,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1};

static __always_inline int hexval(char c)
{
	return hextab[(__u8)c];
}

// hex64 decodes 16 lowercase hex digits at s; -1 on anything else.
static __always_inline int hex64(const char *s, __u64 *out)
{
	__u64 v = 0;
	for (int i = 0; i < 16; i++) {
		int h = hexval(s[i]);
		if (h < 0)
			return -1;
		v = v << 4 | (h & 0xf);
	}
	*out = v;
	return 0;
}

// A traceparent's first 56 bytes and its length, copied out of the event
// for parse_traceparent.
struct tp_buf {
	char s[56];
	__u64 len;
	__u64 trace_hi, trace_lo, span, flags;
};

// tp_scratch holds the one tp_buf trace_start needs, off the stack: the
// entry program's stack and map_find's together must stay within the
// verifier's 512 bytes.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tp_buf);
} tp_scratch SEC(".maps");

// parse_traceparent accepts exactly what userspace's ParseTraceparent does
// (probes/builtin): "vv-<32 hex>-<16 hex>-ff", lowercase, version not ff,
// ids not zero, version 00 exactly 55 bytes, later versions "-" after. A
// global function: verified once, not at every place it is inlined.
__attribute__((noinline)) int parse_traceparent(struct tp_buf *b)
{
	if (!b)
		return -1;
	const char *s = b->s;
	__u64 len = b->len;
	if (len < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-')
		return -1;
	int v0 = hexval(s[0]), v1 = hexval(s[1]);
	if (v0 < 0 || v1 < 0 || (v0 == 15 && v1 == 15))
		return -1;
	if (len > 55 && (s[55] != '-' || (v0 == 0 && v1 == 0)))
		return -1;
	int f0 = hexval(s[53]), f1 = hexval(s[54]);
	if (f0 < 0 || f1 < 0)
		return -1;
	if (hex64(s + 3, &b->trace_hi) < 0 || hex64(s + 19, &b->trace_lo) < 0 || hex64(s + 36, &b->span) < 0)
		return -1;
	if ((b->trace_hi == 0 && b->trace_lo == 0) || b->span == 0)
		return -1;
	b->flags = (f0 << 4 | f1) & 1;
	return 0;
}

static __always_inline __u64 rand64(void)
{
	__u64 v = (__u64)bpf_get_prandom_u32() << 32 | bpf_get_prandom_u32();
	return v ? v : 1; // ids are never zero
}

// How long after a client sent a request its server span may find it by
// the connection: far less than the TIME_WAIT that keeps a port pair from
// being reused.
#define TUPLE_FRESH_NS (5ULL * 1000 * 1000 * 1000)

// conn_of reads the ports of the connection a recipe's chains lead to, a
// *net.TCPConn or a *tls.Conn over one (told by r->want_type and
// r->tls_type, link addresses the process's bias moves), as the side that
// holds it sees them; *tls is set for the latter. -1: no chains, another
// type, a process whose bias is not known yet, or unreadable.
static __always_inline int conn_of(const struct abi_regs *regs, const struct recipe *r, struct conn_key *k, int *tls)
{
	__u64 typ = 0, l = 0, rp = 0, bias = 0;
	if (r->nchains != MAX_CHAINS || !r->want_type || bias_of(r, &bias) < 0 ||
	    read_chain(regs, &r->chains[CHAIN_CONN_TYPE], &typ) < 0 || !typ)
		return -1;
	int lc = CHAIN_TCP_LPORT, rc = CHAIN_TCP_RPORT;
	*tls = r->tls_type && typ == r->tls_type + bias;
	if (*tls) {
		lc = CHAIN_TLS_LPORT;
		rc = CHAIN_TLS_RPORT;
	} else if (typ != r->want_type + bias) {
		return -1;
	}
	if (read_chain(regs, &r->chains[lc], &l) < 0 || read_chain(regs, &r->chains[rc], &rp) < 0 || !l || !rp || l > 65535 ||
	    rp > 65535)
		return -1;
	k->lport = l;
	k->rport = rp;
	return 0;
}

// match_tuple finds, for a server span whose request carried no trace
// context, the client span that sent it, when this agent traces the client
// too (inject recorded it in tuples): by the served connection's ports.
// Nothing is written anywhere: it is how a TLS request, whose bytes the
// socket programs cannot change, still joins its caller's trace. The
// parent's span id goes to out->d.
static __always_inline int match_tuple(const struct abi_regs *regs, const struct recipe *r, struct trace_ctx *t,
				       struct value *out)
{
	struct conn_key served;
	int tls;
	if (conn_of(regs, r, &served, &tls) < 0)
		return 0;
	// The client's key: its local port is the server's remote one.
	struct conn_key k = {.lport = served.rport, .rport = served.lport};
	struct trace_ctx *c = bpf_map_lookup_elem(&tuples, &k);
	if (!c || bpf_ktime_get_ns() - c->depth > TUPLE_FRESH_NS)
		return 0;
	t->trace_hi = c->trace_hi;
	t->trace_lo = c->trace_lo;
	t->flags = c->flags & 0xff;
	out->d = c->span;
	// One request per entry: the next one on the connection records anew.
	bpf_map_delete_elem(&tuples, &k);
	count(COUNTER_PROP_MATCHED);
	return 1;
}

// trace_start makes the trace context of a span starting on ev->goid: the
// trace of the goroutine's open spans (or inherited at its creation), else
// an incoming traceparent's, else its client span's found by connection
// (match_tuple), else a new one; and a new span id. It mirrors
// how userspace parents spans (the local parent first, then the remote one),
// and userspace gives the span these ids, so that a request can carry them
// before userspace has seen the span. The outermost span owns the
// goroutine's trace until it returns.
static __always_inline void trace_start(struct event *ev, struct value *out, const struct capture *c, int big,
					const struct abi_regs *regs, const struct recipe *r)
{
	struct trace_ctx t = {};
	struct gkey goid = gkey_of(ev->goid);
	struct trace_ctx *g = bpf_map_lookup_elem(&gtrace, &goid);
	// A stale owner: a call at its depth or shallower (depths grow towards
	// the deeper frames) means it is gone (unwound by a recovered panic,
	// say).
	if (g && g->depth != 0 && ev->depth <= g->depth)
		g = 0;
	if (g) {
		t.trace_hi = g->trace_hi;
		t.trace_lo = g->trace_lo;
		t.flags = g->flags & ~TRACE_OWN;
	} else {
		int parsed = 0;
		if (c->reg && big) {
			__u8 src = (c->reg - 1) & (MAX_CAPS - 1);
			__u8 bit = 1 << src;
			__u32 zero = 0;
			struct tp_buf *b = bpf_map_lookup_elem(&tp_scratch, &zero);
			if (b && !(ev->failed & bit) && !(ev->nil & bit)) {
				b->len = ev->vals[src].a;
				__builtin_memcpy(b->s, ((struct event_big *)ev)->str[c->slot & (STR_SLOTS - 1)], sizeof(b->s));
				if (parse_traceparent(b) == 0) {
					t.trace_hi = b->trace_hi;
					t.trace_lo = b->trace_lo;
					t.flags = b->flags;
					parsed = 1;
				}
			}
		}
		if (!parsed && c->reg && match_tuple(regs, r, &t, out))
			parsed = 1;
		if (!parsed) {
			t.trace_hi = rand64();
			t.trace_lo = rand64();
			t.flags = ((t.trace_lo >> 1) < sample_bound ? 1 : 0) | TRACE_OWN;
		}
		t.depth = ev->depth;
		bpf_map_update_elem(&gtrace, &goid, &t, BPF_ANY);
		t.flags &= ~TRACE_OWN;
	}
	t.span = rand64();
	out->a = t.trace_hi;
	out->b = t.trace_lo;
	out->c = t.span;
	ev->tflags = t.flags & 0xff;
	if (c->reg2 & TRACE_OUTGOING) {
		t.depth = ev->depth;
		bpf_map_update_elem(&outgoing, &goid, &t, BPF_ANY);
	}
}

// capture fills ev->vals[i] (and a string slot) for one capture of the recipe.
static __always_inline void capture(const struct abi_regs *regs, struct event *ev, const struct capture *c, int i, int big,
				    const struct recipe *r)
{
	struct value *out = &ev->vals[i & (MAX_CAPS - 1)];
	__u8 bit = 1 << (i & (MAX_CAPS - 1));
	__u64 a = reg(regs, c->reg);
	__u64 b = reg(regs, c->reg2);
	char *slot = 0;

	if (big)
		slot = ((struct event_big *)ev)->str[c->slot & (STR_SLOTS - 1)];

	switch (c->kind) {
	case CAP_REG:
		out->a = a;
		break;
	case CAP_TRACE: // after every other capture: see emit
		break;
	case CAP_STRING:
		out->a = b; // length in the program
		out->b = a; // pointer
		if (slot && read_str(slot, a, b, c->max_len) < 0)
			ev->failed |= bit;
		break;
	case CAP_MAPSTR:
	case CAP_HDRS:
	case CAP_PATH: {
		__u64 addr = a;
		for (int h = 0; h < MAX_HOPS; h++) {
			if (h >= c->nhops)
				break;
			if (addr == 0)
				break;
			__u64 next = 0;
			if (bpf_probe_read_user(&next, sizeof(next), (void *)(addr + c->off[h])) < 0) {
				ev->failed |= bit;
				return;
			}
			addr = next;
		}
		if (addr == 0) {
			ev->nil |= bit;
			break;
		}
		addr += c->off[c->nhops & MAX_HOPS];
		if (c->kind == CAP_HDRS) {
			// The header found: its value is read as a string below.
			__u8 k = c->reg2 & (MAX_KEYS - 1);
			// A slice of pointers has a stride of 8: off[2] is then free
			// for a second hop.
			__u64 desc = c->size == 8 ? 8 | 1 << 16 : c->off[2];
			__u64 e = hdr_find(addr, desc, r->keys[k][0], r->keys[k][1], r->key_len[k]);
			if (!e) {
				ev->nil |= bit;
				break;
			}
			addr = e + c->off[3];
		} else if (c->kind == CAP_MAPSTR) {
			__u64 m = 0, val = 0, sl[2] = {0, 0}, s[2] = {0, 0};
			if (bpf_probe_read_user(&m, 8, (void *)addr) < 0 || !m) {
				ev->nil |= bit;
				break;
			}
			__u8 k = c->reg2 & (MAX_KEYS - 1);
			val = map_find(m, c->size, r->keys[k][0], r->keys[k][1], r->key_len[k]);
			// The value is a []string: its first element.
			if (!val || bpf_probe_read_user(sl, 16, (void *)val) < 0 || sl[1] == 0 ||
			    bpf_probe_read_user(s, 16, (void *)sl[0]) < 0) {
				ev->nil |= bit;
				break;
			}
			out->a = s[1];
			out->b = s[0];
			if (slot && read_str(slot, s[0], s[1], c->max_len) < 0)
				ev->failed |= bit;
			break;
		}
		if (c->size && c->kind == CAP_PATH) {
			__u64 v = 0;
			__u32 size = c->size;
			if (size > 8)
				size = 8;
			if (bpf_probe_read_user(&v, size, (void *)addr) < 0)
				ev->failed |= bit;
			out->a = v;
			break;
		}
		__u64 s[2] = {0, 0};
		if (bpf_probe_read_user(s, sizeof(s), (void *)addr) < 0) {
			ev->failed |= bit;
			break;
		}
		out->a = s[1]; // length, as CAP_STRING
		out->b = s[0];
		if (slot && read_str(slot, s[0], s[1], c->max_len) < 0)
			ev->failed |= bit;
		break;
	}
	case CAP_ERROR:
	case CAP_EFACE: {
		// An interface: a = itab (error) or type (any), b = data word.
		// The common concrete error types (*errors.errorString,
		// *fmt.wrapError, *fmt.wrapErrors) all start with their message,
		// and a string's data word points at the string header: so the
		// first two words at b are read as a string. Userspace trusts the
		// message only for those types.
		out->a = a;
		if (a == 0)
			break;
		__u64 typ = a;
		__u64 s[2] = {0, 0};
		if (c->kind == CAP_ERROR && bpf_probe_read_user(&typ, sizeof(typ), (void *)(a + 8)) < 0)
			ev->failed |= bit;
		out->b = typ;
		if (bpf_probe_read_user(s, sizeof(s), (void *)b) < 0) {
			ev->failed |= bit;
			break;
		}
		out->c = s[1];
		out->d = s[0]; // the message's address: userspace reads literals from the binary
		if (slot && read_str(slot, s[0], s[1], c->max_len) < 0)
			ev->failed |= bit;
		break;
	}
	}
}

// lost_event records that an event about goid could not be reported, so
// that the next one tells userspace its knowledge of goid is stale.
static __always_inline void lost_event(__u64 goid)
{
	__u32 one = 1;
	struct gkey k = gkey_of(goid);
	count(COUNTER_RINGBUF_FULL);
	__u32 *n = bpf_map_lookup_elem(&lost, &k);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&lost, &k, &one, BPF_NOEXIST);
}

// header fills the fields every event has; goid is the goroutine the event
// is about, whose loss count it carries.
static __always_inline void header(struct event *ev, __u32 probe, __u16 kind, __u64 goid, __u64 depth)
{
	ev->ts = bpf_ktime_get_ns();
	ev->goid = goid;
	ev->depth = depth;
	ev->probe = probe;
	ev->kind = kind;
	__u64 pidtgid = bpf_get_current_pid_tgid();
	ev->pid = pidtgid >> 32;
	ev->tid = (__u32)pidtgid;
	struct gkey gk = {.goid = goid, .tgid = ev->pid};
	__u32 *nlost = bpf_map_lookup_elem(&lost, &gk);
	if (nlost)
		ev->lost = *nlost;
}

// submit hands ev to the reader, waking it only past the fill threshold.
static __always_inline void submit(struct event *ev)
{
	__u64 flags = BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(ev, flags);
}

// emit_as emits one event; big is a constant at each call (see emit).
static __always_inline int emit_as(struct pt_regs *ctx, const struct recipe *r, __u32 probe, __u16 kind,
				   __u64 goid, __u64 depth, const struct capture *caps, __u8 ncaps,
				   const __u64 *saved, const int big)
{
	struct event *ev;

	if (big)
		ev = bpf_ringbuf_reserve(&events, sizeof(struct event_big), 0);
	else
		ev = bpf_ringbuf_reserve(&events, sizeof(struct event), 0);
	if (!ev) {
		lost_event(goid);
		return -1;
	}
	__builtin_memset(ev, 0, sizeof(struct event));
	header(ev, probe, kind, goid, depth);
	ev->ncaps = ncaps;
	ev->big = big;

	if (ncaps) {
		struct abi_regs *regs = abi_regs(ctx);
		if (!regs) {
			bpf_ringbuf_discard(ev, 0);
			lost_event(goid);
			return -1;
		}
		regs->saved[0] = saved ? saved[0] : 0;
		regs->saved[1] = saved ? saved[1] : 0;
		for (int i = 0; i < MAX_CAPS; i++) {
			if (i >= ncaps)
				break;
			capture(regs, ev, &caps[i], i, big, r);
		}
		// A CapTrace is the last entry capture; it may read an earlier
		// capture's traceparent.
		if (kind == EV_START && (r->flags & RECIPE_TRACE)) {
			__u8 last = (ncaps - 1) & (MAX_CAPS - 1);
			if (caps[last].kind == CAP_TRACE)
				trace_start(ev, &ev->vals[last], &caps[last], big, regs, r);
		}
	}
	submit(ev);
	return 0;
}

// emit reserves a record with string slots only for a recipe that has
// strings. The two sizes are two copies of emit_as, each knowing its size:
// with one copy and a flag, the verifiers before 6.6 lose which size was
// reserved and refuse the string reads.
static __always_inline int emit(struct pt_regs *ctx, const struct recipe *r, __u32 probe, __u16 kind,
				__u64 goid, __u64 depth, const struct capture *caps, __u8 ncaps, __u8 strings,
				const __u64 *saved)
{
	if (strings)
		return emit_as(ctx, r, probe, kind, goid, depth, caps, ncaps, saved, 1);
	return emit_as(ctx, r, probe, kind, goid, depth, caps, ncaps, saved, 0);
}

static __always_inline int goroutine(struct pt_regs *ctx, const struct recipe *r, __u64 *goid, __u64 *depth)
{
	__u64 g = G_REG(ctx);
	__u64 hi = 0;

	if (bpf_probe_read_user(goid, sizeof(*goid), (void *)(g + r->goid_off)) < 0 ||
	    bpf_probe_read_user(&hi, sizeof(hi), (void *)(g + r->stack_hi_off)) < 0) {
		count(COUNTER_READ_G_FAILED);
		return -1;
	}
	*depth = hi - SP_REG(ctx);
	return 0;
}

// A hit of one of the programs: the probe that fired (its attach cookie)
// and, for the programs that run on the traced goroutine, the call it is
// in: goroutine, depth and process, the key of calls.
struct hit {
	__u32 probe;
	struct call_key call;
};

// Where a program runs: on the traced goroutine (R14 is its g, SP its
// frame), or on the system stack (runtime.newproc1), with no call of its
// own.
enum {
	ON_SYSTEM_STACK = 0,
	ON_GOROUTINE = 1,
};

// enter is how every program starts: it returns the recipe of the probe
// that fired and fills h, or returns NULL when the hit is to be ignored:
// no recipe for its cookie, a process not admitted, a probe on a stack
// check whose branch goes to morestack (counted as a prologue re-run: the
// prologue runs again after it), or (ON_GOROUTINE) a goroutine that could
// not be read (counted). on_g is a constant at each call, so each program
// keeps only the checks it needs.
static __always_inline const struct recipe *enter(struct pt_regs *ctx, struct hit *h, int on_g)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	h->probe = (__u32)cookie;
	const struct recipe *r = bpf_map_lookup_elem(&recipes, &h->probe);
	if (!r || !admitted(h->probe))
		return 0;
	if ((cookie & COOKIE_ON_CHECK) && CHECK_TAKEN(ctx)) {
		count(COUNTER_DEDUP);
		return 0;
	}
	if (on_g) {
		h->call.tgid = current_tgid();
		if (goroutine(ctx, r, &h->call.goid, &h->call.depth) < 0)
			return 0;
	}
	return r;
}

// save_regs keeps, for the return, the registers the recipe names: the
// return's field paths start from them (a request pointer, say, whose
// register the function has reused by then).
static __always_inline void save_regs(struct pt_regs *ctx, const struct recipe *r, __u64 *saved)
{
	if (!r->nsave)
		return;
	struct abi_regs *regs = abi_regs(ctx);
	if (!regs)
		return;
	for (int i = 0; i < MAX_SAVED; i++) {
		if (i >= r->nsave)
			break;
		saved[i] = reg(regs, r->save[i]);
	}
}

// read_path reads the integer a CAP_PATH capture names (no string).
static __always_inline int read_path(const struct abi_regs *regs, const struct capture *c, __u64 *v)
{
	__u64 addr = reg(regs, c->reg);
	for (int h = 0; h < MAX_HOPS; h++) {
		if (h >= c->nhops)
			break;
		if (addr == 0 || bpf_probe_read_user(&addr, sizeof(addr), (void *)(addr + c->off[h])) < 0)
			return -1;
	}
	if (addr == 0)
		return -1;
	*v = 0;
	__u32 size = c->size;
	if (size > 8)
		size = 8;
	return bpf_probe_read_user(v, size, (void *)(addr + c->off[c->nhops & MAX_HOPS]));
}

// inject runs at the entry of net/http's (*persistConn).roundTrip, on the
// goroutine that sends the request, before it hands the request to the
// connection's writer goroutine: the request's client span (outgoing) is
// keyed by the connection's ports (the recipe's chains) for the socket
// programs, and recorded for the server span at the other end (tuples).
// The recipe's entry captures: pc.tlsState (TLS connections are never
// changed) and the request's header map (a traceparent the program set
// itself stays alone; its reg2 is the map layout, its key keys[0]).
static __always_inline void inject(struct pt_regs *ctx, const struct recipe *r, __u64 goid)
{
	struct gkey gk = gkey_of(goid);
	struct trace_ctx *t = bpf_map_lookup_elem(&outgoing, &gk);
	if (!t)
		return;
	t->flags |= TRACE_SEEN;
	struct trace_ctx tc = *t;
	struct abi_regs *regs = abi_regs(ctx);
	if (!regs)
		return;
	count(COUNTER_PROP_REQUESTS);
	struct conn_key k = {};
	int tls = 0, have = conn_of(regs, r, &k, &tls) == 0;
	if (have) {
		struct trace_ctx rec = tc;
		rec.flags &= 0xff;
		rec.depth = bpf_ktime_get_ns(); // for tuples: when it was sent
		bpf_map_update_elem(&tuples, &k, &rec, BPF_ANY);
	}
	__u64 tls_state = 0, hdr = 0;
	if (tls || (read_path(regs, &r->entry[0], &tls_state) == 0 && tls_state != 0)) {
		count(COUNTER_PROP_TLS);
		return;
	}
	if (read_path(regs, &r->entry[1], &hdr) == 0 && hdr != 0 &&
	    map_find(hdr, r->entry[1].reg2, r->keys[0][0], r->keys[0][1], r->key_len[0])) {
		count(COUNTER_PROP_PRESENT);
		return;
	}
	if (!have) {
		count(COUNTER_PROP_NO_CONN);
		return;
	}
	if (!bpf_map_lookup_elem(&conns, &k)) {
		count(COUNTER_PROP_UNTRACKED);
		return;
	}
	bpf_map_update_elem(&pending, &k, &tc, BPF_ANY);
}

SEC("uprobe.multi")
int tc_entry(struct pt_regs *ctx)
{
	struct hit h;
	const struct recipe *r = enter(ctx, &h, ON_GOROUTINE);
	if (!r)
		return 0;
	mark_goid(h.call.goid);

	if (r->flags & RECIPE_INJECT) {
		inject(ctx, r, h.call.goid);
		return 0;
	}

	if (r->flags & RECIPE_ENTRY_IS_RET) {
		// A function whose first instruction is its RET (a getter whose
		// result is already in place): the call starts and ends here, and
		// the registers already hold its results.
		__u64 saved[MAX_SAVED] = {0, 0};
		save_regs(ctx, r, saved);
		emit(ctx, r, h.probe, EV_START, h.call.goid, h.call.depth, r->entry, r->n_entry, r->entry_strings, 0);
		emit(ctx, r, h.probe, EV_END, h.call.goid, h.call.depth, r->ret, r->n_ret, r->ret_strings, saved);
		return 0;
	}

	if (r->flags & RECIPE_DEDUP) {
		// Entry at offset 0 runs again after morestack grew the stack:
		// the same goroutine and depth with the call still open is that
		// re-run, not a new call.
		struct call_val *open = bpf_map_lookup_elem(&calls, &h.call);
		if (open && open->probe == h.probe) {
			count(COUNTER_DEDUP);
			return 0;
		}
	}
	struct call_val v = {.probe = h.probe};
	save_regs(ctx, r, v.saved);
	if (bpf_map_update_elem(&calls, &h.call, &v, BPF_ANY) < 0)
		count(COUNTER_CALLS_EVICTED);
	emit(ctx, r, h.probe, EV_START, h.call.goid, h.call.depth, r->entry, r->n_entry, r->entry_strings, 0);
	return 0;
}

// adopt runs at the return of the program's own OpenTelemetry SDK's
// (*tracer).Start: when the goroutine's trace was made here, for no
// caller, it becomes the trace of the span the program started, so that
// requests sent from now on carry the trace the program's spans are in
// (userspace moves tcagent's spans there too: agent/join.go). The recipe's
// return captures: the span's dynamic type, which must be r->want_type
// (moved by the process's bias), and its trace id's two halves (bytes,
// read as little-endian words).
static __always_inline void adopt(struct pt_regs *ctx, const struct recipe *r, __u64 goid)
{
	struct gkey gk = gkey_of(goid);
	struct trace_ctx *g = bpf_map_lookup_elem(&gtrace, &gk);
	if (!g || !(g->flags & TRACE_OWN))
		return;
	struct abi_regs *regs = abi_regs(ctx);
	if (!regs)
		return;
	__u64 typ = 0, hi = 0, lo = 0, bias = 0;
	if (!r->want_type || bias_of(r, &bias) < 0 || read_path(regs, &r->ret[0], &typ) < 0 || typ != r->want_type + bias ||
	    read_path(regs, &r->ret[1], &hi) < 0 || read_path(regs, &r->ret[2], &lo) < 0 || (!hi && !lo))
		return;
	g->trace_hi = __builtin_bswap64(hi);
	g->trace_lo = __builtin_bswap64(lo);
	g->flags &= ~TRACE_OWN;
}

// trace_end: the owner of the goroutine's trace, or the client span sending
// a request, returned.
static __always_inline void trace_end(__u64 goid, __u64 depth)
{
	struct gkey gk = gkey_of(goid);
	struct trace_ctx *g = bpf_map_lookup_elem(&gtrace, &gk);
	if (g && g->depth == depth)
		bpf_map_delete_elem(&gtrace, &gk);
	struct trace_ctx *o = bpf_map_lookup_elem(&outgoing, &gk);
	if (o && o->depth == depth) {
		if (!(o->flags & TRACE_SEEN))
			count(COUNTER_PROP_NOT_SENT);
		bpf_map_delete_elem(&outgoing, &gk);
	}
}

// Where a call's end is seen: at the callee's RET, or in its caller, past
// the return (a CALL there, which the kernel emulates where it single-steps
// a RET, or the return address), where SP is above the return address that
// the callee's entry and RET saw: the call's depth is 8 more than SP's.
enum {
	AT_RET = 0,
	IN_CALLER = 8,
};

static __always_inline int call_end(struct pt_regs *ctx, __u64 adjust)
{
	struct hit h;
	const struct recipe *r = enter(ctx, &h, ON_GOROUTINE);
	if (!r)
		return 0;
	h.call.depth += adjust;

	struct call_val *open = bpf_map_lookup_elem(&calls, &h.call);
	if (!open || open->probe != h.probe) {
		// Started before we attached, or its entry was evicted.
		count(COUNTER_UNMATCHED_RETURN);
		return 0;
	}
	__u64 saved[MAX_SAVED] = {open->saved[0], open->saved[1]};
	bpf_map_delete_elem(&calls, &h.call);
	emit(ctx, r, h.probe, EV_END, h.call.goid, h.call.depth, r->ret, r->n_ret, r->ret_strings, saved);
	if (r->flags & RECIPE_TRACE)
		trace_end(h.call.goid, h.call.depth);
	if (r->flags & RECIPE_ADOPT)
		adopt(ctx, r, h.call.goid);
	return 0;
}

SEC("uprobe.multi")
int tc_return(struct pt_regs *ctx)
{
	return call_end(ctx, AT_RET);
}

// tc_call_end: a call's end in its caller (probes.EndInCallers).
SEC("uprobe.multi")
int tc_call_end(struct pt_regs *ctx)
{
	return call_end(ctx, IN_CALLER);
}

// The runtime probes: goroutine lineage and panics. They use the recipe of
// their cookie for the runtime's offsets.

// The creator's goid of the runtime.newproc1 call running on each thread
// (pid_tgid), for releases whose g has no parentGoid (Go 1.19 and 1.20):
// written at its entry, taken at its RET.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u64);
} creators SEC(".maps");

// Before runtime.newproc1(fn *funcval, callergp *g, callerpc uintptr) *g
// runs, attached only when g has no parentGoid: callergp (RBX) is the
// creator. The probe is at newproc1's entry, or at each direct CALL of it
// (emulated by the kernel; the arguments are in their registers there).
// newproc1 runs on the system stack with preemption disabled (acquirem), so
// its return reaches the creation probe on this same thread before any other
// newproc1 runs: the thread keys the pair.
SEC("uprobe.multi")
int tc_go_create_entry(struct pt_regs *ctx)
{
	struct hit h;
	const struct recipe *r = enter(ctx, &h, ON_SYSTEM_STACK);
	if (!r)
		return 0;
	__u64 tid = bpf_get_current_pid_tgid(), parent = 0;
	if (bpf_probe_read_user(&parent, sizeof(parent), (void *)(ABI_REG(ctx, 1) + r->goid_off)) < 0) {
		bpf_map_delete_elem(&creators, &tid);
		return 0; // counted at the return, which finds no creator
	}
	bpf_map_update_elem(&creators, &tid, &parent, BPF_ANY);
	return 0;
}

// go_create emits the creation of the goroutine whose g is newg, once
// runtime.newproc1 returned it. It runs on the system stack, so R14 is not
// the creator: the new g's parentGoid names it, or, without one
// (RECIPE_CREATOR), the record tc_go_create_entry made of callergp.
static __always_inline int go_create(struct pt_regs *ctx, __u64 newg)
{
	struct hit h;
	const struct recipe *r = enter(ctx, &h, ON_SYSTEM_STACK);
	if (!r)
		return 0;
	__u64 child = 0, parent = 0;
	if (r->flags & RECIPE_CREATOR) {
		__u64 tid = bpf_get_current_pid_tgid();
		__u64 *p = bpf_map_lookup_elem(&creators, &tid);
		if (!p) {
			// The entry was not seen (the call began before we
			// attached) or could not read the creator.
			count(COUNTER_READ_G_FAILED);
			return 0;
		}
		parent = *p;
		bpf_map_delete_elem(&creators, &tid);
		if (bpf_probe_read_user(&child, sizeof(child), (void *)(newg + r->goid_off)) < 0) {
			count(COUNTER_READ_G_FAILED);
			return 0;
		}
	} else if (bpf_probe_read_user(&child, sizeof(child), (void *)(newg + r->goid_off)) < 0 ||
		   bpf_probe_read_user(&parent, sizeof(parent), (void *)(newg + r->parent_goid_off)) < 0) {
		count(COUNTER_READ_G_FAILED);
		return 0;
	}
	struct gkey pk = gkey_of(parent), ck = gkey_of(child);
	if (!bpf_map_lookup_elem(&marked, &pk)) {
		count(COUNTER_GO_UNMARKED);
		return 0;
	}
	mark(&ck);
	// A lost create is recorded against the child: what is unknown is the
	// child's inheritance, not the parent's state.
	struct event *ev = bpf_ringbuf_reserve(&events, sizeof(struct event), 0);
	if (!ev) {
		lost_event(child);
		return 0;
	}
	// The child's spans join the trace of the creator's open spans, as
	// userspace parents them.
	struct trace_ctx *g = bpf_map_lookup_elem(&gtrace, &pk);
	if (g) {
		struct trace_ctx t = *g;
		t.depth = 0;
		bpf_map_update_elem(&gtrace, &ck, &t, BPF_ANY);
	}
	__builtin_memset(ev, 0, sizeof(struct event));
	header(ev, h.probe, EV_GO_CREATE, parent, 0);
	ev->ncaps = 1;
	ev->vals[0].a = child;
	submit(ev);
	return 0;
}

// Where runtime.newproc1's result is in RAX: its RETs (the fallback, single-
// stepped), or the return address in a caller without an emulated site.
SEC("uprobe.multi")
int tc_go_create(struct pt_regs *ctx)
{
	return go_create(ctx, ABI_REG(ctx, 0));
}

// At runtime.newproc.func1's CALL runtime.runqput(pp, newg, true), right
// after newproc1 returned: the new g is in RBX, runqput's second argument
// (probes.GoCreateSite proves the code between carries it there). The
// kernel emulates the CALL: no single-step on a go statement.
SEC("uprobe.multi")
int tc_go_create_call(struct pt_regs *ctx)
{
	return go_create(ctx, ABI_REG(ctx, 1));
}

// Entry of runtime.goexit1, on the exiting goroutine: normal exits and
// runtime.Goexit both pass here.
SEC("uprobe.multi")
int tc_go_exit(struct pt_regs *ctx)
{
	struct hit h;
	const struct recipe *r = enter(ctx, &h, ON_GOROUTINE);
	if (!r)
		return 0;
	struct gkey gk = {.goid = h.call.goid, .tgid = h.call.tgid};
	if (bpf_map_delete_elem(&marked, &gk) < 0) {
		// Never marked: no span on it, and no lost event or trace
		// context either (each needs a traced call on it or its creator).
		count(COUNTER_GO_UNMARKED);
		return 0;
	}
	emit(ctx, r, h.probe, EV_GO_EXIT, h.call.goid, h.call.depth, r->entry, 0, 0, 0);
	bpf_map_delete_elem(&lost, &gk);
	bpf_map_delete_elem(&gtrace, &gk);
	bpf_map_delete_elem(&outgoing, &gk);
	return 0;
}

// Entry of runtime.gopanic: the recipe captures its argument (an any).
SEC("uprobe.multi")
int tc_panic(struct pt_regs *ctx)
{
	struct hit h;
	const struct recipe *r = enter(ctx, &h, ON_GOROUTINE);
	if (!r)
		return 0;
	emit(ctx, r, h.probe, EV_PANIC, h.call.goid, h.call.depth, r->entry, r->n_entry, r->entry_strings, 0);
	return 0;
}
