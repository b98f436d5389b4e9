package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"
)

// Limits shared with tracer.h.
const (
	MaxProbes      = 4096
	MaxCaptures    = 8
	StringSlots    = 4
	StringSlotSize = 256
)

// CookieOnCheck (tracer.h COOKIE_ON_CHECK) marks the cookie of an entry
// link on a stack check's branch (probes.Placement.EntryOnCheck): the
// program drops the hits whose branch goes to morestack.
const CookieOnCheck = 1 << 32

// CaptureKind says how a capture reads its registers.
type CaptureKind uint8

// Capture kinds (tracer.h enum capture_kind).
const (
	CapReg    CaptureKind = 1 // one integer register
	CapString CaptureKind = 2 // Reg = pointer, Reg2 = length; bytes into string slot Slot
	CapError  CaptureKind = 3 // Reg = itab, Reg2 = data word; message into string slot Slot
	CapEface  CaptureKind = 4 // Reg = type, Reg2 = data word (an any); string or message into slot Slot
	CapPath   CaptureKind = 5 // a field reached from Reg through pointer hops (see Capture)
	// CapMapStr reads the first string stored under Recipe.Keys[Reg2] in a
	// map[string][]string whose pointer is the field a CapPath would read
	// (Size 0 there); Size says the map layout: MapClassic or MapSwiss.
	CapMapStr CaptureKind = 6
	// CapTrace, with --propagate, makes the trace context of the span the
	// call opens (trace id in A and B, span id in C, flags in D): see
	// trace_start in tracer.c. Reg is 1 + the index of an earlier capture
	// holding an incoming traceparent (0: none), Slot that capture's string
	// slot; Reg2 holds TraceOutgoing for client spans whose request may
	// carry the context.
	CapTrace CaptureKind = 7
	// CapHdrs reads the value of the first header whose key is
	// Recipe.Keys[Reg2] among the first MaxHeaders of a slice of {Key,
	// Value} headers (strings or byte slices), the slice reached as a CapPath
	// string would be, with at most one hop. Stride is the bytes between
	// headers, ValueAt the value's offset in one; Size 8 says the slice holds
	// pointers to the headers (Stride 8), whose path may have two hops.
	CapHdrs CaptureKind = 8
)

// MaxHeaders is how many headers a CapHdrs capture looks through.
const MaxHeaders = 8

// RegSP names, as a capture's Reg, the stack pointer: at a function's
// entry or RET the first argument or result Go's ABI passes on the stack is
// at SP+8.
const RegSP = 31

// TraceOutgoing marks, in a CapTrace's Reg2, a client span that sends a
// request the socket programs may add its context to.
const TraceOutgoing = 1

// Go map layouts, for CapMapStr.
const (
	MapClassic = 1 // runtime.hmap: Go 1.23 and older
	MapSwiss   = 2 // internal/runtime/maps.Map: Go 1.24 and newer
)

// BaseSaved is added to an index into Recipe.Save to name, as a CapPath's
// Reg, a value saved at the call's entry.
const BaseSaved = 16

// Path limits (tracer.h).
const (
	MaxSaved = 2
	MaxHops  = 3
	// MaxChainHops and MaxChains bound a Recipe's Chains.
	MaxChainHops = 6
	MaxChains    = 5
)

// Chain reads the 8-byte integer at the end of a path of up to
// MaxChainHops pointers from register Reg: deeper than a Capture goes,
// for --propagate's connection ports.
type Chain struct {
	Reg   uint8
	Hops  []uint16
	Field uint16
}

// The chains of a Recipe (tracer.h) lead to a connection: a client
// request's (Inject) or the one a server probe serves. The connection's
// type (an itab's type), then its ports as a *net.TCPConn, then as a
// *tls.Conn over one.
const (
	ChainConnType                         = 0
	ChainTCPLocalPort, ChainTCPRemotePort = 1, 2
	ChainTLSLocalPort, ChainTLSRemotePort = 3, 4
)

// Capture is one value a probe reads at entry or at return. Registers are
// numbered in the order of Go's integer register ABI: 0=RAX, 1=RBX, 2=RCX,
// 3=RDI, 4=RSI, 5=R8, 6=R9, 7=R10, 8=R11.
//
// A CapPath capture starts from Reg's value (or BaseSaved+i, the i-th value
// of Recipe.Save kept from the entry), follows len(Hops) pointers, each read
// at the current address plus the hop's offset, then reads at the address
// plus Field: Size bytes of an integer, or, when Size is 0, a string. A nil
// pointer on the way sets Value.Nil.
type Capture struct {
	Kind      CaptureKind
	Reg, Reg2 uint8
	Slot      uint8
	MaxLen    uint16
	Hops      []uint16
	Field     uint16
	Size      uint8
	// Stride and ValueAt describe a CapHdrs capture's headers.
	Stride, ValueAt uint16
}

// encodeCapture lays c out as the kernel reads it: off holds the path's
// hops, then its field; a CapHdrs capture's stride and value offset go in
// off[2] and off[3], its stride implied by pointers to the headers (8),
// which frees off[2] for a second hop.
func encodeCapture(c Capture) (tracerCapture, error) {
	if len(c.Hops) > MaxHops {
		return tracerCapture{}, fmt.Errorf("a field path has at most %d pointer hops", MaxHops)
	}
	tc := tracerCapture{Kind: uint8(c.Kind), Reg: c.Reg, Reg2: c.Reg2, Slot: c.Slot, MaxLen: c.MaxLen,
		Nhops: uint8(len(c.Hops)), Size: c.Size}
	copy(tc.Off[:], c.Hops)
	if c.Kind == CapHdrs {
		switch {
		case c.Size == 8 && (len(c.Hops) > 2 || c.Stride != 8):
			return tracerCapture{}, fmt.Errorf("a capture of header pointers has at most two pointer hops and stride 8")
		case c.Size != 8 && len(c.Hops) > 1:
			return tracerCapture{}, fmt.Errorf("a header capture has at most one pointer hop")
		}
		if c.Size != 8 {
			tc.Off[2] = c.Stride
		}
		tc.Off[3] = c.ValueAt
	}
	tc.Off[len(c.Hops)] = c.Field
	return tc, nil
}

// Recipe is what the generic programs do for one probe.
type Recipe struct {
	// Dedup drops a second entry on the same goroutine and depth while the
	// call is open: needed when the entry probe sits at offset 0, where a
	// prologue re-run after stack growth hits it again.
	Dedup bool
	// EntryIsReturn is set when the entry instruction is a RET: the entry
	// program then reports the start and the end of the call in one hit,
	// and no return probe goes there.
	EntryIsReturn bool
	// Trace is set, with --propagate, on probes that open a span (their
	// last entry capture is a CapTrace): the outermost one owns the
	// goroutine's trace until it returns.
	Trace bool
	// Inject marks net/http's (*persistConn).roundTrip with --propagate: no
	// event; its chains locate the connection and its entry captures the
	// request's TLS state and headers (see inject in tracer.c).
	Inject bool
	// Adopt marks, with --propagate, the probe on the program's own
	// OpenTelemetry SDK's (*tracer).Start: a goroutine's trace made here
	// becomes the trace of the span the program started (see adopt in
	// tracer.c); its first three return captures read the span's type and
	// trace id.
	Adopt bool
	// Creator marks the runtime probes of a release whose g has no
	// parentGoid (Go 1.19, 1.20): the creating goroutine is read at
	// runtime.newproc1's entry or its CALL sites (GoCreateEntryProgram) and
	// paired with the new g at its return by thread.
	Creator bool
	// PIE marks the recipes of a position-independent executable: the
	// programs add the process's bias (Admission) to WantType and TLSType.
	PIE bool
	// WantType is the link address (each process adds its bias, see
	// Admission) of the type descriptor the value an Inject or Adopt
	// probe, or a server probe's chains, reads must have: *net.TCPConn, or
	// the SDK's *trace.recordingSpan. TLSType is *tls.Conn's, for the
	// chains.
	WantType, TLSType uint64
	// Chains (--propagate) find a connection's ports: none, or one per
	// Chain* index.
	Chains []Chain
	// Offsets of g.goid, g.stack.hi and g.parentGoid in the target's
	// runtime.
	GoidOffset, StackHiOffset, ParentGoidOffset uint16
	Entry, Return                               []Capture
	// Save are the registers kept from the entry for the return's CapPath
	// captures (at most MaxSaved).
	Save []uint8
	// Keys are the keys of CapMapStr and CapHdrs captures (at most 4, of
	// at most 16 bytes).
	Keys []string
}

// Counter indexes (tracer.h enum counter).
const (
	CounterRingbufFull     = 0
	CounterReadGFailed     = 1
	CounterUnmatchedReturn = 2
	CounterDedup           = 3
	CounterCallsEvicted    = 4
	CounterPropRequests    = 5
	CounterPropTLS         = 6
	CounterPropPresent     = 7
	CounterPropNoConn      = 8
	CounterPropInjected    = 9
	CounterPropNotHTTP1    = 10
	CounterPropNoRoom      = 11
	CounterPropUntracked   = 12
	CounterPropNotSent     = 13
	CounterPropMatched     = 14
	CounterGoUnmarked      = 15
	CounterMarksFull       = 16
)

// Counters are the kernel side's own counts, summed over CPUs.
type Counters struct {
	RingbufFull     uint64 // events lost: the ring buffer had no room
	ReadGFailed     uint64 // events lost: the goroutine could not be read
	UnmatchedReturn uint64 // returns of calls whose entry was not seen
	Dedup           uint64 // prologue re-runs dropped (and arm64's hits on a check taken to morestack)
	CallsEvicted    uint64 // open calls the kernel could not record
	// --propagate: outgoing HTTP/1 requests seen, and those sent unchanged
	// because of TLS, a traceparent the program set, no TCP connection to
	// key them by, or a connection opened before the socket programs were
	// attached; and client spans whose request never reached an HTTP/1
	// connection (HTTP/2, the program's own RoundTripper, a failed dial).
	PropRequests, PropTLS, PropPresent, PropNoConn, PropUntracked, PropNotSent uint64
	// PropMatched counts server spans whose request carried no trace
	// context, matched by connection to the client span that sent it.
	PropMatched uint64
	// GoUnmarked counts goroutine creations and exits not sent because
	// the goroutine carries no span (nothing is lost: userspace would
	// ignore them); MarksFull, goroutines the kernel could not remember
	// as carrying one, whose children then lose their lineage.
	GoUnmarked, MarksFull uint64
}

// Options configure Load.
type Options struct {
	// RingBufferSize in bytes: a power of two, at least one page. 0 means
	// the default (8 MiB: 25,000 events, while 10,000 traced calls a second
	// fill 300 KiB between two polls).
	RingBufferSize uint32
	// WakeupBytes is the fill above which a submit wakes the reader; below
	// it the reader polls. 0 means a quarter of the buffer.
	WakeupBytes uint64
	// Propagator, when set, is the --propagate socket side the tracer hands
	// outgoing requests to (its pending map replaces the tracer's own).
	Propagator *Propagator
	// SampleBound, when set, decides whether a trace the kernel makes is
	// sampled: when its id's last 8 bytes, read big-endian, shifted right
	// by one, are below it (OpenTelemetry's TraceIDRatioBased rule; see
	// SampleBoundOf). Unset: always.
	SampleBound *uint64
	// MapEntries bounds the per-goroutine maps (open calls, loss counts,
	// and with a Propagator trace contexts); 0 means 65,536. Their memory
	// is locked kernel memory, charged to the agent's cgroup: about 110
	// bytes an entry and map.
	MapEntries uint32
	// Probes is how many recipes to hold (probe ids below it), for every
	// executable together; 0 means MaxProbes. About 450 bytes each.
	Probes uint32
	// Slots is how many processes the tracer serves at once (slot 0
	// counts the processes not admitted yet); 0 means MaxSlots-1.
	Slots uint32
	// SingleUprobes loads the programs for one uprobe link per offset even
	// where the kernel has uprobe_multi links: the path kernels before 6.6
	// take, so that tests run it here. No flag sets it.
	SingleUprobes bool
}

// Tracer is the loaded programs and maps: one set serves every executable
// an agent traces, each executable a range of probe ids (SetRecipe), each
// process admitted (AdmitPID) for its executable's range.
type Tracer struct {
	// Multi reports whether the kernel has uprobe_multi links, which the
	// programs were then loaded for.
	Multi bool
	objs  tracerObjects
	slots uint32 // counter slots, slot 0 included
}

// Slots returns how many counter slots the tracer has: processes it can
// count apart, slot 0 included.
func (t *Tracer) Slots() uint32 { return t.slots }

// SampleBoundOf is the SampleBound of a root sampling ratio, as
// OpenTelemetry's TraceIDRatioBased sampler computes it.
func SampleBoundOf(ratio float64) uint64 {
	switch {
	case ratio >= 1:
		return 1 << 63
	case ratio <= 0:
		return 0
	}
	return uint64(ratio * (1 << 63))
}

// Load loads the programs into the kernel.
func Load(opts Options) (*Tracer, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}
	spec, err := loadTracer()
	if err != nil {
		return nil, fmt.Errorf("load BPF spec: %w", err)
	}
	if opts.RingBufferSize != 0 {
		spec.Maps["events"].MaxEntries = opts.RingBufferSize
	}
	if opts.SampleBound != nil {
		if err := spec.Variables["sample_bound"].Set(*opts.SampleBound); err != nil {
			return nil, fmt.Errorf("set sampling bound: %w", err)
		}
	}
	if opts.WakeupBytes == 0 && opts.RingBufferSize != 0 {
		opts.WakeupBytes = uint64(opts.RingBufferSize) / 4
	}
	if opts.WakeupBytes != 0 {
		if err := spec.Variables["wakeup_bytes"].Set(opts.WakeupBytes); err != nil {
			return nil, fmt.Errorf("set wakeup threshold: %w", err)
		}
	}
	if opts.MapEntries != 0 {
		for _, m := range []string{"calls", "lost", "gtrace", "outgoing"} {
			spec.Maps[m].MaxEntries = opts.MapEntries
		}
	}
	if opts.Propagator == nil {
		// Without --propagate the trace contexts and the socket side's
		// maps are never written.
		for _, m := range []string{"gtrace", "outgoing", "pending", "conns", "tuples"} {
			spec.Maps[m].MaxEntries = 256
		}
	}
	if opts.Probes != 0 {
		spec.Maps["recipes"].MaxEntries = min(opts.Probes, MaxProbeIDs)
	}
	slots := uint32(MaxSlots)
	if opts.Slots != 0 {
		slots = min(opts.Slots+1, MaxSlots)
	}
	// A process not traced (ignored, or leaving) holds an entry too.
	spec.Maps["pids"].MaxEntries = 4 * slots
	spec.Maps["counters"].MaxEntries = counterMax * slots
	t := &Tracer{Multi: !opts.SingleUprobes && features.HaveBPFLinkUprobeMulti() == nil, slots: slots}
	if !t.Multi {
		// Older kernels: the programs attach one uprobe at a time.
		for _, p := range spec.Programs {
			p.AttachType = ebpf.AttachNone
		}
	}
	var co *ebpf.CollectionOptions
	if opts.Propagator != nil {
		co = &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{
			"pending": opts.Propagator.objs.Pending, "conns": opts.Propagator.objs.Conns, "tuples": opts.Propagator.objs.Tuples}}
	}
	if err := spec.LoadAndAssign(&t.objs, co); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load BPF programs: %+v", ve)
		}
		return nil, fmt.Errorf("load BPF programs: %w", err)
	}
	return t, nil
}

// Close releases the programs and maps. Links must be closed first.
func (t *Tracer) Close() error { return t.objs.Close() }

// EntryProgram is the program for function entries.
func (t *Tracer) EntryProgram() *ebpf.Program { return t.objs.TcEntry }

// ReturnProgram is the program for RET instructions.
func (t *Tracer) ReturnProgram() *ebpf.Program { return t.objs.TcReturn }

// CallEndProgram is the program for a call's end in its caller, past the
// callee's return (probes.Probe.Ends): it matches the call 8 bytes above
// the SP it sees.
func (t *Tracer) CallEndProgram() *ebpf.Program { return t.objs.TcCallEnd }

// GoCreateProgram is the program for where runtime.newproc1's result is
// in RAX: its RETs, or the return address in one of its callers.
func (t *Tracer) GoCreateProgram() *ebpf.Program { return t.objs.TcGoCreate }

// GoCreateCallProgram is the program for runtime.newproc.func1's CALL
// runtime.runqput, where the new g is in RBX (probes.GoCreateSite).
func (t *Tracer) GoCreateCallProgram() *ebpf.Program { return t.objs.TcGoCreateCall }

// GoCreateEntryProgram is the program for runtime.newproc1's entry, where
// the runtime has no g.parentGoid (Recipe.Creator).
func (t *Tracer) GoCreateEntryProgram() *ebpf.Program { return t.objs.TcGoCreateEntry }

// GoExitProgram is the program for runtime.goexit1's entry.
func (t *Tracer) GoExitProgram() *ebpf.Program { return t.objs.TcGoExit }

// PanicProgram is the program for runtime.gopanic's entry.
func (t *Tracer) PanicProgram() *ebpf.Program { return t.objs.TcPanic }

// Events is the ring buffer.
func (t *Tracer) Events() *ebpf.Map { return t.objs.Events }

// Probes returns how many probe ids the tracer holds recipes for.
func (t *Tracer) Probes() uint32 { return t.objs.Recipes.MaxEntries() }

// ClearRecipe empties the recipe of probe id, whose links are closed, for
// the id to serve another executable.
func (t *Tracer) ClearRecipe(id uint32) error {
	if err := t.objs.Recipes.Put(id, &tracerRecipe{}); err != nil {
		return fmt.Errorf("clear recipe %d: %w", id, err)
	}
	return nil
}

// SetRecipe installs the recipe of probe id (the attach cookie).
func (t *Tracer) SetRecipe(id uint32, r Recipe) error {
	if id >= t.objs.Recipes.MaxEntries() {
		return fmt.Errorf("probe id %d: at most %d probes", id, t.objs.Recipes.MaxEntries())
	}
	if len(r.Entry) > MaxCaptures || len(r.Return) > MaxCaptures {
		return fmt.Errorf("probe id %d: at most %d captures at entry and at return", id, MaxCaptures)
	}
	var v tracerRecipe
	if r.Dedup {
		v.Flags |= 1
	}
	if r.EntryIsReturn {
		v.Flags |= 2
	}
	if r.Trace {
		v.Flags |= 4
	}
	if r.Inject {
		v.Flags |= 8
	}
	if r.Adopt {
		v.Flags |= 16
	}
	if r.Creator {
		v.Flags |= 32
	}
	if r.PIE {
		v.Flags |= 64
	}
	v.GoidOff, v.StackHiOff, v.ParentGoidOff = r.GoidOffset, r.StackHiOffset, r.ParentGoidOffset
	v.WantType, v.TlsType = r.WantType, r.TLSType
	if len(r.Chains) > MaxChains {
		return fmt.Errorf("probe id %d: %d chains, at most %d", id, len(r.Chains), MaxChains)
	}
	v.Nchains = uint8(len(r.Chains))
	for i, c := range r.Chains {
		if len(c.Hops) > MaxChainHops {
			return fmt.Errorf("probe id %d: a chain has at most %d pointer hops", id, MaxChainHops)
		}
		v.Chains[i].Reg, v.Chains[i].Nhops = c.Reg, uint8(len(c.Hops))
		copy(v.Chains[i].Off[:], c.Hops)
		v.Chains[i].Off[len(c.Hops)] = c.Field
	}
	fill := func(dst *[MaxCaptures]tracerCapture, caps []Capture) (strings uint8, err error) {
		for i, c := range caps {
			if c.Kind == CapString || c.Kind == CapError || c.Kind == CapEface {
				if c.Slot >= StringSlots {
					return 0, fmt.Errorf("probe id %d: at most %d strings at entry and at return", id, StringSlots)
				}
				strings++
			}
			if c.Kind == CapPath && c.Size == 0 || c.Kind == CapMapStr || c.Kind == CapHdrs {
				if c.Slot >= StringSlots {
					return 0, fmt.Errorf("probe id %d: at most %d strings at entry and at return", id, StringSlots)
				}
				strings++
			}
			tc, err := encodeCapture(c)
			if err != nil {
				return 0, fmt.Errorf("probe id %d: %w", id, err)
			}
			dst[i] = tc
		}
		return strings, nil
	}
	var err error
	if v.EntryStrings, err = fill(&v.Entry, r.Entry); err != nil {
		return err
	}
	if v.RetStrings, err = fill(&v.Ret, r.Return); err != nil {
		return err
	}
	v.N_entry, v.N_ret = uint8(len(r.Entry)), uint8(len(r.Return))
	if len(r.Save) > MaxSaved {
		return fmt.Errorf("probe id %d: at most %d saved registers", id, MaxSaved)
	}
	v.Nsave = uint8(len(r.Save))
	copy(v.Save[:], r.Save)
	if len(r.Keys) > len(v.Keys) {
		return fmt.Errorf("probe id %d: at most %d map keys", id, len(v.Keys))
	}
	for i, k := range r.Keys {
		if len(k) > 16 {
			return fmt.Errorf("probe id %d: map key %q longer than 16 bytes", id, k)
		}
		var w [16]byte
		copy(w[:], k)
		v.KeyLen[i] = uint8(len(k))
		v.Keys[i] = [2]uint64{binary.LittleEndian.Uint64(w[:8]), binary.LittleEndian.Uint64(w[8:])}
	}
	if err := t.objs.Recipes.Put(id, &v); err != nil {
		return fmt.Errorf("store recipe %d: %w", id, err)
	}
	return nil
}

// MaxSlots bounds the processes a tracer serves at once, slot 0 (the
// processes not admitted yet) included.
const MaxSlots = 1024

// MaxProbeIDs bounds Options.Probes.
const MaxProbeIDs = 1 << 16

// Pid states (tracer.h enum pid_state).
const (
	pidTraced  = 1
	pidIgnored = 2
)

// Admission is how the programs serve one process.
type Admission struct {
	// Slot holds its counters (1 to Slots()-1; zeroed at admission).
	Slot uint32
	// Lo and Hi bound the probe ids of its executable, [Lo, Hi).
	Lo, Hi uint32
	// Bias is what the process adds to its executable's link addresses
	// (Recipe.WantType's).
	Bias uint64
}

// AdmitPID makes the programs serve process pid as a says.
func (t *Tracer) AdmitPID(pid uint32, a Admission) error {
	if a.Slot == 0 || a.Slot >= t.slots {
		return fmt.Errorf("pid %d: counter slot %d out of range", pid, a.Slot)
	}
	if err := t.resetCounters(a.Slot); err != nil {
		return err
	}
	if err := t.objs.Pids.Put(pid, tracerPidVal{State: pidTraced, Slot: a.Slot, Lo: a.Lo, Hi: a.Hi, Bias: a.Bias}); err != nil {
		return fmt.Errorf("admit pid %d: %w", pid, err)
	}
	return nil
}

// IgnorePID makes the programs do nothing in process pid.
func (t *Tracer) IgnorePID(pid uint32) error {
	if err := t.objs.Pids.Put(pid, tracerPidVal{State: pidIgnored}); err != nil {
		return fmt.Errorf("ignore pid %d: %w", pid, err)
	}
	return nil
}

// ForgetPID drops what the tracer knows of process pid (it exited): a later
// process with its number is new to it.
func (t *Tracer) ForgetPID(pid uint32) error {
	if err := t.objs.Pids.Delete(pid); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("forget pid %d: %w", pid, err)
	}
	return t.forgetMarks(pid)
}

// forgetMarks deletes the marks (tracer.c's marked) of process pid's
// goroutines, which its exit left: they would fill the map.
func (t *Tracer) forgetMarks(pid uint32) error {
	marks, err := t.marks()
	if err != nil {
		return fmt.Errorf("forget pid %d's goroutines: %w", pid, err)
	}
	for _, k := range marks {
		if uint32(k.Tgid) != pid {
			continue
		}
		if err := t.objs.Marked.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("forget pid %d's goroutine %d: %w", pid, k.Goid, err)
		}
	}
	return nil
}

// marks lists the marked goroutines (tracer.c's marked).
func (t *Tracer) marks() ([]tracerGkey, error) {
	var (
		k   tracerGkey
		v   uint8
		all []tracerGkey
	)
	it := t.objs.Marked.Iterate()
	for it.Next(&k, &v) {
		all = append(all, k)
	}
	return all, it.Err()
}

func (t *Tracer) resetCounters(slot uint32) error {
	zero := make([]uint64, ebpf.MustPossibleCPU())
	for i := uint32(0); i < counterMax; i++ {
		if err := t.objs.Counters.Put(slot*counterMax+i, zero); err != nil {
			return fmt.Errorf("reset counters of slot %d: %w", slot, err)
		}
	}
	return nil
}

// counterMax is tracer.h's COUNTER_MAX: the counters of one slot.
const counterMax = 18

// Counters reads the kernel side's counters of slot.
func (t *Tracer) Counters(slot uint32) (Counters, error) {
	var c Counters
	read := func(idx uint32) (uint64, error) {
		var perCPU []uint64
		if err := t.objs.Counters.Lookup(slot*counterMax+idx, &perCPU); err != nil {
			return 0, fmt.Errorf("read counter %d: %w", idx, err)
		}
		var sum uint64
		for _, v := range perCPU {
			sum += v
		}
		return sum, nil
	}
	var err error
	for _, f := range []struct {
		idx uint32
		dst *uint64
	}{
		{CounterRingbufFull, &c.RingbufFull},
		{CounterReadGFailed, &c.ReadGFailed},
		{CounterUnmatchedReturn, &c.UnmatchedReturn},
		{CounterDedup, &c.Dedup},
		{CounterCallsEvicted, &c.CallsEvicted},
		{CounterPropRequests, &c.PropRequests},
		{CounterPropTLS, &c.PropTLS},
		{CounterPropPresent, &c.PropPresent},
		{CounterPropNoConn, &c.PropNoConn},
		{CounterPropUntracked, &c.PropUntracked},
		{CounterPropNotSent, &c.PropNotSent},
		{CounterPropMatched, &c.PropMatched},
		{CounterGoUnmarked, &c.GoUnmarked},
		{CounterMarksFull, &c.MarksFull},
	} {
		if *f.dst, err = read(f.idx); err != nil {
			return c, err
		}
	}
	return c, nil
}
