package agent

import "github.com/tcagent/tcagent/probes"

// biased is one process's view of its executable: the addresses it reads
// (a type descriptor's, a string literal's) are the executable's link
// addresses plus the process's load bias, which the shared analysis does
// not hold.
type biased struct {
	bin  *probes.Binary
	bias uint64
}

// TypeName names the type descriptor at addr in the process.
func (b biased) TypeName(addr uint64) string {
	if addr < b.bias {
		return ""
	}
	return b.bin.TypeName(addr - b.bias)
}

// ReadOnlyString reads n bytes of a literal at addr in the process.
func (b biased) ReadOnlyString(addr, n uint64) (string, bool) {
	if addr < b.bias {
		return "", false
	}
	return b.bin.ReadOnlyString(addr-b.bias, n)
}
