package agent

import "github.com/tcagent/tcagent/binder/semconv"

// compact keeps, once the image is loaded (or failed to), only what
// tracing the executable needs: the span side's facts about it are read
// now, and its parsed tables (functions, DWARF) are dropped. They were most
// of the memory a traced executable cost the daemon, which keeps an
// image, and its analysed binary, for as long as a process runs it, and
// keeps the binaries of the last executables it analysed, loaded or not
// (bench/README §8g); a later image of the same binary parses them again.
func (im *Image) compact() {
	if im.bin == nil {
		return
	}
	im.facts = semconv.FactsOf(im.bin)
	im.bin.Compact()
}
