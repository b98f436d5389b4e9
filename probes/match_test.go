package probes

import (
	"slices"
	"testing"
)

// TestMatch: --symbol patterns as users type Go names, against the names a
// Go binary has: receivers, generic instantiations, package paths.
func TestMatch(t *testing.T) {
	names := []string{
		"github.com/mccutchen/go-httpbin/v2/httpbin.(*HTTPBin).Status",
		"github.com/mccutchen/go-httpbin/v2/httpbin.(*HTTPBin).StatusCodes",
		"github.com/mccutchen/go-httpbin/v2/httpbin.(*metaResponseWriter).Status",
		"github.com/mccutchen/go-httpbin/v2/httpbin.parseWeightedChoices[go.shape.int]",
		"github.com/mccutchen/go-httpbin/v2/httpbin.parseWeightedChoices[go.shape.string]",
		"main.Map[go.shape.*uint8,go.shape.int]",
		"main.Keys[*main.T]",
		"main.(*Store).Get",
		"main.(**Store).Get",
		"main.Status",
		"net/http.(*Server).Serve",
		"net/http.serverHandler.ServeHTTP",
	}
	b := &Binary{syms: &symtab{names: names}}
	for _, c := range []struct {
		pattern string
		want    []int // indexes into names
	}{
		// Substrings: the receiver's star and the generic brackets are literal.
		{"(*HTTPBin).Status", []int{0, 1}},
		{"(*metaResponseWriter).Status", []int{2}},
		{"parseWeightedChoices[go.shape.int]", []int{3}},
		{"parseWeightedChoices[", []int{3, 4}},
		{"Map[go.shape.*uint8", []int{5}},
		{"Keys[*main.T]", []int{6}},
		{"(**Store)", []int{8}},
		{"ServeHTTP", []int{11}},
		{"Nothing", nil},
		// Globs of the whole name: a star where no pointer can be, and `?`.
		{"*.Status", []int{0, 2, 9}},
		{"*(*HTTPBin).*", []int{0, 1}},
		{"net/http.*", []int{10, 11}},
		{"main.*", []int{5, 6, 7, 8, 9}},
		{"*Status*", []int{0, 1, 2, 9}},
		{"main.Statu?", []int{9}},
		{"*.parseWeightedChoices[go.shape.*]", []int{3, 4}},
		{"*(*Store).Ge?", []int{7}},
		{"*.parseWeightedChoices[*]", []int{3, 4}},
		{"main.Keys[*]", []int{6}},
		{"main.(*S*).Get", []int{7}},
		{"Status*", nil}, // a glob is anchored: no name starts with Status
		{"main.Map[go.shape.*uint8,go.shape.int]", []int{5}},
	} {
		var want []string
		for _, i := range c.want {
			want = append(want, names[i])
		}
		if got := b.Match(c.pattern); !slices.Equal(got, want) {
			t.Errorf("Match(%q) = %q, want %q", c.pattern, got, want)
		}
	}
}

// TestPointerStar: which stars of a pattern are Go's pointers.
func TestPointerStar(t *testing.T) {
	for pattern, wild := range map[string]bool{
		"(*T).M":          false,
		"F[*T]":           false,
		"F[[]*T]":         false,
		"F[a,*T]":         false,
		"F[go.shape.*T]":  false,
		"F[chan *T]":      false,
		"(**T).M":         false,
		"*":               true,
		"main.*":          true,
		"main.F*":         true,
		"main.(*T).*":     true,
		"**":              true,
		"main.?":          true,
		"F[go.shape.int]": false,
		"(*":              false,
		"F[*]":            true,
		"F[a,*]":          true,
		"F[go.shape.*]":   true,
		"(*S*).M":         true,
	} {
		if _, got := parseGlob(pattern); got != wild {
			t.Errorf("parseGlob(%q): wildcard %v, want %v", pattern, got, wild)
		}
	}
}
