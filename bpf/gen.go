// Package bpf holds tcagent's eBPF programs (tracer.c), their bpf2go
// bindings and the decoder for the events they emit. The generated Go files
// and objects are committed so that building tcagent needs no clang; `make
// generate` rebuilds them and records the hash of the C sources, which a test
// checks against the sources to catch stale objects.
package bpf

//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target amd64 -type event -type recipe -type capture -type value tracer tracer.c
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target amd64 -type trace_ctx -type conn_key propagator propagate.c
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target amd64 -type proc_event procs procs.c
//go:generate sh -c "cat tracer.c tracer.h propagate.c propagate.h procs.c | sha256sum | cut -d' ' -f1 > sources.sha256"
