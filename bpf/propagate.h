// SPDX-License-Identifier: (MIT OR GPL-2.0)
//
// The maps the tracers (tracer.c) and the socket programs (propagate.c)
// share for --propagate: each object declares them, and at load time the
// tracers' are replaced by the socket programs' (bpf.Load).
#ifndef TCAGENT_PROPAGATE_H
#define TCAGENT_PROPAGATE_H

#include "tracer.h"

// The client connections sock_ops saw open (and put in the sockhash): a
// request on one that is not here, opened before the programs were
// attached, cannot carry a header.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct conn_key);
	__type(value, __u64);
} conns SEC(".maps");

// The requests handed to the socket programs, by connection: the trace
// context of their client span, taken by the request's first write.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct conn_key);
	__type(value, struct trace_ctx);
} pending SEC(".maps");

// Every HTTP/1 request a traced client sends, TLS or not, by connection:
// the trace context of its client span, for the server span at the other
// end, when the agent traces it too, to find its parent by when no header
// came (see trace_start).
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct conn_key);
	__type(value, struct trace_ctx);
} tuples SEC(".maps");

#endif
