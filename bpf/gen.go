// Package bpf holds tcagent's eBPF programs (tracer.c), their bpf2go
// bindings and the decoder for the events they emit. The generated Go files
// and objects are committed so that building tcagent needs no clang; `make
// generate` rebuilds them and records the hashes of the C sources and of what
// was generated from them (sources.sha256). Two tests catch stale objects:
// one checks every file against those hashes (a source or an object edited
// alone), one rebuilds the objects with clang-19 and compares them byte for
// byte with the committed ones (a stale object with a rewritten hash file).
package bpf

//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target amd64,arm64 -type event -type recipe -type capture -type value tracer tracer.c
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target amd64,arm64 -type trace_ctx -type conn_key propagator propagate.c
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target amd64,arm64 -type proc_event procs procs.c
//go:generate sh -c "sha256sum tracer.c tracer.h propagate.c propagate.h procs.c tracer_x86_bpfel.o tracer_x86_bpfel.go propagator_x86_bpfel.o propagator_x86_bpfel.go procs_x86_bpfel.o procs_x86_bpfel.go tracer_arm64_bpfel.o tracer_arm64_bpfel.go propagator_arm64_bpfel.o propagator_arm64_bpfel.go procs_arm64_bpfel.o procs_arm64_bpfel.go > sources.sha256"
