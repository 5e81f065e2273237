package oauth

import (
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Fixed descriptions of the registration rules on displayed text and
// redirect URI schemes.
const (
	descUnsafeText     = "client metadata must not contain control or format characters"
	descUnsafeRedirect = "redirect URIs must not contain control or format characters"
	descPrivateScheme  = "custom redirect URI schemes must be private-use schemes named by a reversed domain name, such as com.example.app:/callback"
	descTooLong        = "a metadata value is too long"
)

// Caps of the client metadata values (bytes; counts for lists).
const (
	maxRedirectURIs  = 20
	maxURILen        = 2000
	maxNameLen       = 200
	maxScopeLen      = 2000
	maxContacts      = 10
	maxContactLen    = 320
	maxSoftwareIDLen = 200
)

// displayMetadata are RFC 7591 fields the gateway neither stores nor
// echoes but that consent pages commonly show; they are held to the same
// text rules as client_name so that no later page can show a spoofed one.
type displayMetadata struct {
	LogoURI         string   `json:"logo_uri"`
	TOSURI          string   `json:"tos_uri"`
	PolicyURI       string   `json:"policy_uri"`
	JWKSURI         string   `json:"jwks_uri"`
	SoftwareID      string   `json:"software_id"`
	SoftwareVersion string   `json:"software_version"`
	Contacts        []string `json:"contacts"`
}

// parseClientMetadata decodes and validates a registration request body or
// a client ID metadata document (dcr false). Errors are *regError.
func parseClientMetadata(body []byte, dcr bool) (*clientMetadata, error) {
	var md clientMetadata
	var disp displayMetadata
	if json.Unmarshal(body, &md) != nil || json.Unmarshal(body, &disp) != nil {
		return nil, badMetadata("the body is not a JSON client metadata object")
	}
	if err := checkDisplay(&disp); err != nil {
		return nil, err
	}
	if err := validateMetadata(&md, dcr); err != nil {
		return nil, err
	}
	return &md, nil
}

// checkDisplay applies the text rules and caps to the display-only fields.
func checkDisplay(d *displayMetadata) error {
	if len(d.Contacts) > maxContacts {
		return badMetadata(descTooLong)
	}
	for _, v := range []struct {
		s   string
		max int
	}{{d.LogoURI, maxURILen}, {d.TOSURI, maxURILen}, {d.PolicyURI, maxURILen}, {d.JWKSURI, maxURILen},
		{d.SoftwareID, maxSoftwareIDLen}, {d.SoftwareVersion, maxSoftwareIDLen}} {
		if len(v.s) > v.max {
			return badMetadata(descTooLong)
		}
		if unsafeText(v.s) {
			return badMetadata(descUnsafeText)
		}
	}
	for _, c := range d.Contacts {
		if len(c) > maxContactLen {
			return badMetadata(descTooLong)
		}
		if unsafeText(c) {
			return badMetadata(descUnsafeText)
		}
	}
	return nil
}

// unsafeText reports whether s could make a page show something other than
// what it contains: invalid UTF-8 (decoded as U+FFFD), control characters
// (Cc), format characters (Cf: bidi embeddings, overrides and isolates
// U+202A-U+202E and U+2066-U+2069, zero-width characters, the BOM, tag
// characters), line and paragraph separators (Zl, Zp), private-use
// characters (Co) and noncharacters.
func unsafeText(s string) bool {
	if !utf8.ValidString(s) {
		return true
	}
	for _, r := range s {
		if r == utf8.RuneError || unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co, unicode.Zl, unicode.Zp) ||
			(r >= 0xFDD0 && r <= 0xFDEF) || r&0xFFFE == 0xFFFE {
			return true
		}
	}
	return false
}

// privateUseScheme reports whether a lowercased URI scheme has the RFC 8252
// section 7.1 private-use form: a reversed domain name with at least two
// labels (com.example.app), each a DNS label, the first starting with a
// letter.
func privateUseScheme(scheme string) bool {
	labels := strings.Split(scheme, ".")
	if len(labels) < 2 || len(scheme) > 253 {
		return false
	}
	if c := scheme[0]; c < 'a' || c > 'z' {
		return false // RFC 3986: a scheme starts with a letter
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
