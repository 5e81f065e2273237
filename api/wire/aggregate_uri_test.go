package wire_test

import (
	"testing"

	"github.com/mcpgate/mcpgate/api/wire"
)

// TestExposedURIRoundTrip: exposed URIs (and templates) map back exactly.
func TestExposedURIRoundTrip(t *testing.T) {
	for _, c := range []struct{ server, uri, exposed string }{
		{"notes", "file:///a/b.txt", "mcpgate://notes/file:///a/b.txt"},
		{"Gmail", "mail://inbox/{id}", "mcpgate://Gmail/mail://inbox/{id}"},
		{"x", "", "mcpgate://x/"},
		{"a-b_c", "urn:x?y#z", "mcpgate://a-b_c/urn:x?y#z"},
	} {
		if got := wire.ExposedURI(c.server, c.uri); got != c.exposed {
			t.Errorf("ExposedURI(%q, %q) = %q, want %q", c.server, c.uri, got, c.exposed)
		}
		s, u, ok := wire.ParseExposedURI(c.exposed)
		if !ok || s != c.server || u != c.uri {
			t.Errorf("ParseExposedURI(%q) = %q, %q, %v", c.exposed, s, u, ok)
		}
	}
	for _, bad := range []string{"", "file:///x", "mcpgate://", "mcpgate://notes", "mcpgate:///x", "mcpgate://a.b/x", "MCPGATE://notes/x", "mcpgate://-x/y"} {
		if s, u, ok := wire.ParseExposedURI(bad); ok {
			t.Errorf("ParseExposedURI(%q) = %q, %q, true", bad, s, u)
		}
	}
}

// FuzzExposedURI: whatever ParseExposedURI accepts builds back to the same
// string, and every (valid server, uri) pair round-trips.
func FuzzExposedURI(f *testing.F) {
	f.Add("mcpgate://notes/file:///a", "notes", "file:///a")
	f.Add("mcpgate://a/", "a", "")
	f.Add("mcpgate:///x", "x", "mcpgate://y/z")
	f.Fuzz(func(t *testing.T, exposed, server, uri string) {
		if s, u, ok := wire.ParseExposedURI(exposed); ok {
			if !wire.ValidServerName(s) {
				t.Fatalf("ParseExposedURI(%q) server %q invalid", exposed, s)
			}
			if back := wire.ExposedURI(s, u); back != exposed {
				t.Fatalf("ParseExposedURI(%q) = %q, %q; builds back %q", exposed, s, u, back)
			}
		}
		if !wire.ValidServerName(server) {
			return
		}
		s, u, ok := wire.ParseExposedURI(wire.ExposedURI(server, uri))
		if !ok || s != server || u != uri {
			t.Fatalf("round trip of (%q, %q) = %q, %q, %v", server, uri, s, u, ok)
		}
	})
}
