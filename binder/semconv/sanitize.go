package semconv

import "strings"

// SanitizeSQL replaces the literals of a statement with ?, so that values
// (a password, a card number) never leave the process in db.query.text:
// quoted strings ('…' with ” escapes, E'…' with backslash escapes, N'…',
// X'…' and B'…'), dollar-quoted strings ($$…$$, $tag$…$tag$) and numbers. It
// drops comments (they can hold values too) and keeps identifiers ("quoted"
// or `backquoted`, and names with digits like t1), keywords and
// placeholders ($1, ?, :name, @p1).
func SanitizeSQL(q string) string {
	var b strings.Builder
	b.Grow(len(q))
	isIdent := func(c byte) bool {
		return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
	}
	quoted := func(i int, quote byte, backslash bool) int {
		// i is just past the opening quote; returns the index past the
		// closing one (or the end).
		for i < len(q) {
			switch {
			case backslash && q[i] == '\\' && i+1 < len(q):
				i += 2
			case q[i] == quote && i+1 < len(q) && q[i+1] == quote:
				i += 2 // doubled quote: an escaped quote
			case q[i] == quote:
				return i + 1
			default:
				i++
			}
		}
		return i
	}
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			for i < len(q) && q[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			end := strings.Index(q[i+2:], "*/")
			if end < 0 {
				i = len(q)
			} else {
				i += 2 + end + 2
			}
			b.WriteByte(' ')
		case c == '\'':
			i = quoted(i+1, '\'', false)
			b.WriteByte('?')
		case (c == 'E' || c == 'e') && i+1 < len(q) && q[i+1] == '\'' && (i == 0 || !isIdent(q[i-1])):
			i = quoted(i+2, '\'', true)
			b.WriteByte('?')
		case (c == 'N' || c == 'n' || c == 'X' || c == 'x' || c == 'B' || c == 'b') && i+1 < len(q) && q[i+1] == '\'' && (i == 0 || !isIdent(q[i-1])):
			i = quoted(i+2, '\'', false)
			b.WriteByte('?')
		case c == '"' || c == '`':
			end := quoted(i+1, c, false)
			b.WriteString(q[i:end]) // an identifier
			i = end
		case c == '$' && i+1 < len(q) && q[i+1] >= '0' && q[i+1] <= '9':
			j := i + 1 // a placeholder: $1
			for j < len(q) && q[j] >= '0' && q[j] <= '9' {
				j++
			}
			b.WriteString(q[i:j])
			i = j
		case c == '$':
			// A dollar quote: $$ or $tag$ … the same tag.
			j := i + 1
			for j < len(q) && (isIdent(q[j]) && !(q[j] >= '0' && q[j] <= '9' && j == i+1)) {
				j++
			}
			if j < len(q) && q[j] == '$' {
				tag := q[i : j+1]
				end := strings.Index(q[j+1:], tag)
				if end < 0 {
					i = len(q)
				} else {
					i = j + 1 + end + len(tag)
				}
				b.WriteByte('?')
			} else {
				b.WriteByte(c)
				i++
			}
		case c >= '0' && c <= '9' && (i == 0 || !isIdent(q[i-1])):
			j := i
			for j < len(q) && (isIdent(q[j]) || q[j] == '.' || (q[j] == '+' || q[j] == '-') && (q[j-1] == 'e' || q[j-1] == 'E')) {
				j++
			}
			b.WriteByte('?')
			i = j
		case c == '.' && i+1 < len(q) && q[i+1] >= '0' && q[i+1] <= '9' && (i == 0 || !isIdent(q[i-1])):
			j := i + 1
			for j < len(q) && (q[j] >= '0' && q[j] <= '9') {
				j++
			}
			b.WriteByte('?')
			i = j
		case isIdent(c):
			j := i
			for j < len(q) && isIdent(q[j]) {
				j++
			}
			b.WriteString(q[i:j])
			i = j
		default:
			b.WriteByte(c)
			i++
		}
	}
	return strings.Join(strings.Fields(b.String()), " ")
}
