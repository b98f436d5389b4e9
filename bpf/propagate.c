//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0)
//
// --propagate: the socket side. The uprobes (tracer.c, inject) key each
// outgoing HTTP/1 request's client span by its connection in `pending`;
// here a sock_ops program on the traced processes' cgroup puts their TCP
// connections in a sockhash as they connect, and an sk_msg program on it
// adds a traceparent header after the request line of the request's first
// write, with bpf_msg_push_data: the traced program's memory is never
// written (bpf_probe_write_user is refused under kernel lockdown anyway).
// Anything it cannot change safely goes out untouched, and is counted.

#include "propagate.h"
#include <bpf/bpf_endian.h>

char __license[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct conn_key);
	__type(value, __u64);
} socks SEC(".maps");



struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} prop_counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&prop_counters, &idx);
	if (v)
		*v += 1;
}

SEC("sockops")
int tc_sockops(struct bpf_sock_ops *skops)
{
	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB || (skops->family != 2 /* AF_INET */ && skops->family != 10 /* AF_INET6 */))
		return 1;
	struct conn_key k = {.lport = skops->local_port, .rport = bpf_ntohl(skops->remote_port)};
	if (bpf_sock_hash_update(skops, &socks, &k, BPF_ANY) == 0) {
		__u64 one = 1;
		bpf_map_update_elem(&conns, &k, &one, BPF_ANY);
	}
	return 1;
}

// "traceparent: 00-" + 32 + "-" + 16 + "-0f\r\n"
#define HDR_LEN 70
#define LINE_MAX 2048

static __always_inline char hexdigit(__u64 v)
{
	v &= 0xf;
	return v < 10 ? '0' + v : 'a' + v - 10;
}

SEC("sk_msg")
int tc_msg(struct sk_msg_md *msg)
{
	struct conn_key k = {.lport = msg->local_port, .rport = bpf_ntohl(msg->remote_port)};
	struct trace_ctx *p = bpf_map_lookup_elem(&pending, &k);
	if (!p)
		return SK_PASS;
	// The request's first write: whatever happens, no later write of the
	// connection is touched for it.
	struct trace_ctx t = *p;
	bpf_map_delete_elem(&pending, &k);

	__u32 size = msg->size;
	__u32 want = size < LINE_MAX ? size : LINE_MAX;
	if (want < 16 || bpf_msg_pull_data(msg, 0, want, 0) < 0) {
		count(COUNTER_PROP_NOT_HTTP1);
		return SK_PASS;
	}
	// The request line: "METHOD SP target SP HTTP/1.x CRLF", the method in
	// upper-case letters.
	__u32 eol = 0;
	for (__u32 i = 0; i < LINE_MAX; i++) {
		char *d = (char *)(long)msg->data + i;
		if ((void *)(d + 2) > (void *)(long)msg->data_end)
			break;
		if (d[0] == '\r' && d[1] == '\n') {
			eol = i;
			break;
		}
	}
	char *data = (char *)(long)msg->data;
	if (eol < 14 || (void *)(data + eol) > (void *)(long)msg->data_end || (void *)(data + 1) > (void *)(long)msg->data_end ||
	    data[0] < 'A' || data[0] > 'Z') {
		count(COUNTER_PROP_NOT_HTTP1);
		return SK_PASS;
	}
	char *v = data + eol - 8;
	if ((void *)v < (void *)data || (void *)(v + 8) > (void *)(long)msg->data_end || v[0] != 'H' || v[1] != 'T' ||
	    v[2] != 'T' || v[3] != 'P' || v[4] != '/' || v[5] != '1' || v[6] != '.' || (v[7] != '0' && v[7] != '1') ||
	    *(v - 1) != ' ') {
		count(COUNTER_PROP_NOT_HTTP1);
		return SK_PASS;
	}
	__u32 at = eol + 2;
	if (bpf_msg_push_data(msg, at, HDR_LEN, 0) < 0) {
		count(COUNTER_PROP_NO_ROOM);
		return SK_PASS;
	}
	char *h = 0;
	if (bpf_msg_pull_data(msg, at, at + HDR_LEN, 0) == 0)
		h = (char *)(long)msg->data;
	if (!h || (void *)(h + HDR_LEN) > (void *)(long)msg->data_end) {
		// Pushed but not writable: never leave the gap in the stream.
		bpf_msg_pop_data(msg, at, HDR_LEN, 0);
		count(COUNTER_PROP_NO_ROOM);
		return SK_PASS;
	}
	const char prefix[] = "traceparent: 00-";
	for (int i = 0; i < 16; i++)
		h[i] = prefix[i];
	for (int i = 0; i < 16; i++) {
		h[16 + i] = hexdigit(t.trace_hi >> (60 - 4 * i));
		h[32 + i] = hexdigit(t.trace_lo >> (60 - 4 * i));
		h[49 + i] = hexdigit(t.span >> (60 - 4 * i));
	}
	h[48] = '-';
	h[65] = '-';
	h[66] = '0';
	h[67] = hexdigit(t.flags & 1);
	h[68] = '\r';
	h[69] = '\n';
	count(COUNTER_PROP_INJECTED);
	return SK_PASS;
}
