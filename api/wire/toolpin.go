package wire

import "unicode/utf8"

// Tool pinning: the contract between the data plane, which computes tool
// definition digests, and the control plane, which records them.
const (
	// MaxToolDigestReport bounds the tools of one ReportToolDigests call.
	MaxToolDigestReport = 64
	// MaxPinnedToolName bounds the name of a pinned tool, in bytes.
	MaxPinnedToolName = 128
)

// ValidToolDigest reports whether d is a hex SHA-256 as the data plane
// writes it (64 lowercase hex digits).
func ValidToolDigest(d string) bool {
	if len(d) != 64 {
		return false
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// ValidPinnedToolName reports whether a tool name may be pinned: 1 to
// MaxPinnedToolName bytes of UTF-8 without control characters.
func ValidPinnedToolName(name string) bool {
	if name == "" || len(name) > MaxPinnedToolName || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}
