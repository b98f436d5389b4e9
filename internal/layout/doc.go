// Package layout holds no code: its test keeps the packages of tcagent in
// the order of the one-way flow (kernel → ring buffer → decoded events →
// per-goroutine lifecycle → channel events → binder → spans → exporters),
// so that a newcomer can read one package per stage, in order, without
// going back to an earlier one.
//
// A package imports only packages of a lower rank (the table in
// layout_test.go). The channel contract (what a lifecycle publishes and a
// binder subscribes to), the exporters and the internal helpers import no
// project package at all. Tests may import later stages to exercise a
// stage in context: the rule is about what a stage's code depends on.
package layout
