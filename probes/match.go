package probes

import (
	"strings"
	"unicode"
)

// namePattern returns the test a `--symbol` pattern makes of a function's
// qualified name (`pkg/path.(*T).Method`, `pkg.F[go.shape.int]`), matching
// the way a user types Go names:
//
//   - a plain pattern is a substring of the name: `(*HTTPBin).Status`,
//     `parseWeightedChoices[go.shape.int]`, `Status`;
//   - a pattern with a wildcard is a glob of the whole name, in which `*` is
//     any run of characters, `/` included, and `?` any one character.
//
// Go names contain `*` themselves, as pointers, so a `*` is a wildcard only
// where a pointer cannot be. A pointer's star follows `(`, `[`, `]`, `,`, a
// space, another pointer's star, or `go.shape.`, and comes before a type (a
// letter, `_`, `[`, `(`, `*`) or the pattern's end: `(*T).M`, `F[*T]`,
// `[]*T`, `go.shape.*uint8`, `(*`. Any other star is a wildcard: first,
// after `.`, `/` or a letter, or before `]`, `)` or `,` (`F[*]`). `[` is
// never special: generic names hold brackets, so there are no character
// classes.
func namePattern(pattern string) func(name string) bool {
	glob, wild := parseGlob(pattern)
	if !wild {
		return func(name string) bool { return strings.Contains(name, pattern) }
	}
	return func(name string) bool { return matchGlob(glob, []rune(name)) }
}

// globToken is one element of a parsed glob: a literal rune, or a wildcard.
type globToken struct {
	r    rune
	kind byte // 0 literal, '*' any run, '?' any one rune
}

// parseGlob splits pattern into tokens and reports whether any is a
// wildcard.
func parseGlob(pattern string) (toks []globToken, wild bool) {
	rs := []rune(pattern)
	for i, r := range rs {
		t := globToken{r: r}
		switch r {
		case '?':
			t.kind = '?'
		case '*':
			if !pointerStar(rs[:i], rs[i+1:], toks) {
				t.kind = '*'
			}
		}
		wild = wild || t.kind != 0
		toks = append(toks, t)
	}
	return toks, wild
}

// pointerStar reports whether a `*` between before and after is a Go
// pointer's star; toks are the tokens of before.
func pointerStar(before, after []rune, toks []globToken) bool {
	if len(after) > 0 {
		switch r := after[0]; {
		case r == '_' || r == '[' || r == '(' || r == '*' || unicode.IsLetter(r):
		default:
			return false // `F[*]`: no type follows
		}
	}
	if len(before) == 0 {
		return false // no name starts with a pointer
	}
	switch before[len(before)-1] {
	case '(', '[', ']', ',', ' ':
		return true
	case '*':
		return toks[len(toks)-1].kind == 0 // `**T`; after a wildcard, a wildcard
	}
	return strings.HasSuffix(string(before), "go.shape.")
}

// matchGlob matches the whole of name against toks: the classic greedy walk
// that backtracks to the last `*` on a mismatch, linear in practice.
func matchGlob(toks []globToken, name []rune) bool {
	ti, ni := 0, 0
	star, mark := -1, 0
	for ni < len(name) {
		switch {
		case ti < len(toks) && toks[ti].kind == '*':
			star, mark = ti, ni
			ti++
		case ti < len(toks) && (toks[ti].kind == '?' || toks[ti].r == name[ni]):
			ti++
			ni++
		case star >= 0:
			mark++
			ti, ni = star+1, mark
		default:
			return false
		}
	}
	for ti < len(toks) && toks[ti].kind == '*' {
		ti++
	}
	return ti == len(toks)
}
