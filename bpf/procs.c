//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0)
//
// Process discovery for the host-wide daemon: an event when a process
// execs a new program and when one exits, from raw tracepoints (they need
// no tracefs), as they happen rather than by rescanning /proc.

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char __license[] SEC("license") = "Dual MIT/GPL";

enum proc_kind {
	PROC_EXEC = 1,
	PROC_EXIT = 2,
};

struct proc_event {
	__u32 pid; // the process (thread group) id
	__u32 kind;
	__u64 ts; // CLOCK_MONOTONIC, ns
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} proc_events SEC(".maps");

// Events that found no room in the ring buffer, per CPU.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} proc_lost SEC(".maps");

// Only here so that bpf2go emits a Go type for it.
const struct proc_event *unused_proc_event __attribute__((unused));

static __always_inline int emit(__u32 pid, __u32 kind)
{
	struct proc_event *e = bpf_ringbuf_reserve(&proc_events, sizeof(*e), 0);
	if (!e) {
		__u32 zero = 0;
		__u64 *n = bpf_map_lookup_elem(&proc_lost, &zero);
		if (n)
			*n += 1;
		return 0;
	}
	e->pid = pid;
	e->kind = kind;
	e->ts = bpf_ktime_get_ns();
	bpf_ringbuf_submit(e, 0);
	return 0;
}

// The exec'ing task is current: its thread group is the process.
SEC("raw_tracepoint/sched_process_exec")
int tc_proc_exec(void *ctx)
{
	return emit(bpf_get_current_pid_tgid() >> 32, PROC_EXEC);
}

// Every thread exits through here: the process is gone when its leader is.
SEC("raw_tracepoint/sched_process_exit")
int tc_proc_exit(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if ((__u32)id != (__u32)(id >> 32))
		return 0;
	return emit(id >> 32, PROC_EXIT);
}
