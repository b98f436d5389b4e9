package probes

// How an attribute says that its value was cut or could not be trusted.
// The reader writes these when it decodes a capture; the built-ins' span
// shaping reads them back; users see them.

// TruncatedSuffix ends a captured string that was longer than its bound.
const TruncatedSuffix = "…"

// UnreadableSuffix is appended to a capture's key for the attribute that
// replaces a value tcagent could not read or trust (KEY.unreadable); its
// value says why: ReasonReadFailed, ReasonLength or ReasonNotText.
const UnreadableSuffix = ".unreadable"

// Why a value read from the target is not exported.
const (
	// ReasonReadFailed: the memory could not be read (and is not a
	// literal in the binary's read-only data).
	ReasonReadFailed = "read_failed"
	// ReasonLength: a string header whose length or pointer no Go string
	// has (negative, beyond the reader's bound, a nil pointer with a
	// length, an address outside user space).
	ReasonLength = "length"
	// ReasonNotText: the bytes are not text (invalid UTF-8, or control
	// characters other than tab, newline and carriage return).
	ReasonNotText = "not_text"
)
