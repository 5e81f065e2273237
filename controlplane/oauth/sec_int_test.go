package oauth_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Issue 8 item 13: with the upstream's issuer configured, the callback
// requires iss (RFC 9207) and compares it exactly; otherwise a fixed error,
// no code exchange upstream and no grant stored.
func TestSec13CallbackRequiresIss(t *testing.T) {
	e := newEnv(t, nil)
	const msg = "The sign-in response came from an unexpected issuer. Nothing was saved."
	for _, tc := range []struct {
		name string
		iss  []string // nil: no iss parameter
	}{
		{"missing", nil},
		{"empty", []string{""}},
		{"mismatched", []string{"https://accounts.evil.example"}},
		{"trailing slash", []string{"<up>/"}},
		{"repeated", []string{"<up>", "<up>"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBrowser(t)
			_, up := e.startFlow(b, bobKey)
			cb := e.upstreamApprove(b, up, "bob")
			before := e.up.Stats().AuthorizationCodeGrants
			q := cb.Query()
			q.Del("iss")
			for _, v := range tc.iss {
				q.Add("iss", strings.ReplaceAll(v, "<up>", e.upURL))
			}
			r := b.get(e.pub + "/oauth/callback?" + q.Encode())
			if r.status != http.StatusBadRequest || r.header.Get("Location") != "" {
				t.Fatalf("status %d, Location %q; want 400 without redirect", r.status, r.header.Get("Location"))
			}
			if !strings.Contains(r.body, msg) {
				t.Errorf("body lacks the fixed message: %s", r.body)
			}
			wantPageHeaders(t, r)
			if e.up.Stats().AuthorizationCodeGrants != before {
				t.Errorf("the upstream code was exchanged")
			}
			e.sync()
			if _, ok := e.st.Grant("bob", "Gmail"); ok {
				t.Errorf("a grant was stored")
			}
		})
	}
	t.Run("error response without iss", func(t *testing.T) {
		b := newBrowser(t)
		_, up := e.startFlow(b, bobKey)
		r := b.get(e.pub + "/oauth/callback?" + url.Values{"error": {"access_denied"}, "state": {up.Query().Get("state")}}.Encode())
		if r.status != http.StatusBadRequest || r.header.Get("Location") != "" || !strings.Contains(r.body, msg) {
			t.Fatalf("status %d, Location %q, body %s", r.status, r.header.Get("Location"), r.body)
		}
	})
	t.Run("exact iss", func(t *testing.T) {
		b := newBrowser(t)
		_, up := e.startFlow(b, bobKey)
		cb := e.upstreamApprove(b, up, "bob")
		if cb.Query().Get("iss") != e.upURL {
			t.Fatalf("the demo provider sends iss %q", cb.Query().Get("iss"))
		}
		r := b.get(cb.String())
		if r.status != http.StatusFound || r.location(t).Query().Get("code") == "" {
			t.Fatalf("status %d, Location %q", r.status, r.header.Get("Location"))
		}
		e.sync()
		if _, ok := e.st.Grant("bob", "Gmail"); !ok {
			t.Errorf("no grant stored")
		}
	})
}
