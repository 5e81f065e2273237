package oauth

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/wire"
)

// FuzzMapIdentity: the claim mapping of an IdP sign-in is total and only
// ever accepts what its rules allow: a name of the principal grammar
// derived from the principal claim, a verified email when that claim is
// email, an allowed domain when domains are listed, bounded groups; every
// refusal is a 403 with one of the fixed messages.
func FuzzMapIdentity(f *testing.F) {
	f.Add(`{"email":"ada@demo.example","email_verified":true,"groups":["release"]}`, "", "", "")
	f.Add(`{"email":"Ada@Corp.Example","email_verified":"true","groups":"one"}`, "email", "", "corp.example")
	f.Add(`{"email":"bob@evil.example","email_verified":true}`, "", "", "corp.example,demo.example")
	f.Add(`{"sub":"00u1","email":"x@corp.example","email_verified":false}`, "sub", "roles", "corp.example")
	f.Add(`{"preferred_username":"-lead","email_verified":true}`, "preferred_username", "", "")
	f.Add(`{"email":"a@b.c","email_verified":true,"groups":[1,null,"",{"x":1}]}`, "", "", "")
	f.Add(`{"email":"`+strings.Repeat("a", 70)+`@x.example","email_verified":true}`, "", "", "")
	f.Fuzz(func(t *testing.T, claimsJSON, principalClaim, groupsClaim, domains string) {
		var claims map[string]any
		if json.Unmarshal([]byte(claimsJSON), &claims) != nil {
			return
		}
		def := &configv1.IdentityProvider{PrincipalClaim: principalClaim, GroupsClaim: groupsClaim}
		if domains != "" {
			def.AllowedDomains = strings.Split(domains, ",")
		}
		id, status, msg := mapIdentity(def, claims)
		if msg != "" {
			if status != http.StatusForbidden || !slices.Contains([]string{msgIdPNoName, msgIdPDomain}, msg) {
				t.Fatalf("refusal %d %q", status, msg)
			}
			return
		}
		if !wire.ValidServerName(id.name) {
			t.Fatalf("accepted name %q outside the principal grammar", id.name)
		}
		if n, ok := PrincipalName(id.claim); !ok || n != id.name || id.claim != strings.ToLower(id.claim) {
			t.Fatalf("name %q is not derived from claim %q", id.name, id.claim)
		}
		pc := principalClaim
		if pc == "" {
			pc = "email"
		}
		if pc == "email" && !claimTrue(claims["email_verified"]) {
			t.Fatal("unverified email accepted")
		}
		if len(def.AllowedDomains) > 0 {
			email, _ := claims["email"].(string)
			if pc == "email" {
				email = strings.TrimSpace(email)
			}
			_, d, _ := strings.Cut(strings.ToLower(email), "@")
			if !slices.ContainsFunc(def.AllowedDomains, func(a string) bool { return strings.ToLower(strings.TrimPrefix(a, "@")) == d }) {
				t.Fatalf("domain %q accepted, allowed %v", d, def.AllowedDomains)
			}
		}
		if len(id.groups) > 256 {
			t.Fatalf("%d groups", len(id.groups))
		}
		for _, g := range id.groups {
			if g == "" || len(g) > 256 {
				t.Fatalf("group %q", g)
			}
		}
	})
}
