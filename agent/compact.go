package agent

import "github.com/tcagent/tcagent/binder/semconv"

// compact keeps, once the probes are compiled, only what tracing the
// executable needs: the span side's facts about it are read now, and its
// parsed tables (functions, DWARF) are dropped. They were most of the
// memory a traced executable cost the daemon, which keeps an image, and
// its analysed binary, for as long as a process runs it (bench/README
// §8g); a later image of the same binary parses them again.
func (im *Image) compact() {
	im.facts = semconv.FactsOf(im.bin)
	im.bin.Compact()
}
