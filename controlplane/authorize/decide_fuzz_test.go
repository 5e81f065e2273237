package authorize_test

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
)

// FuzzDecide: for any request, Decide over the matrix state is a pure,
// total function: the same input gives the same answer, an error is only
// "invalid request" (the state has no misconfigured server), and the
// answer is one consistent outcome whose headers are sendable and whose
// challenge names the requested route under the public base.
func FuzzDecide(f *testing.F) {
	f.Add("Gmail", keyAlice, "", "", "tools/call", "search", base, false)
	f.Add("bearer", "", "tok-alice-bearer", "", "initialize", "", base+"/", false)
	f.Add("pass", keyAlice, "", "Bearer x\r\nX-Evil: 1", "tools/call", "rm", base, false)
	f.Add("cc", keyBob, "tok-alice-cc", "", "tools/list", "", "HTTP://GW.example.com:443", true)
	f.Add("nope", "", "", "", "", "", "gw.example.com", false)
	st := matrixState()
	f.Fuzz(func(t *testing.T, route, key, bearer, pass, method, tool, pub string, malformed bool) {
		req := &authorizev1.AuthorizeRequest{
			Route: route, PublicBaseUrl: pub, HttpMethod: "POST", JsonrpcMethod: method, ToolName: tool,
			Credentials: &authorizev1.Credentials{ApiKey: key, BearerToken: bearer, PassthroughAuthorization: pass, MalformedAuthorization: malformed},
		}
		d, err := authorize.Decide(st, now, req)
		d2, err2 := authorize.Decide(st, now, req)
		if (err == nil) != (err2 == nil) || !proto.Equal(d.Response, d2.Response) || d.Need != d2.Need {
			t.Fatalf("not deterministic: %v %v / %v %v", d.Response, err, d2.Response, err2)
		}
		if err != nil {
			if !errors.Is(err, authorize.ErrInvalidRequest) {
				t.Fatalf("error %v is not an invalid request", err)
			}
			return
		}
		r := d.Response
		switch r.GetDecision() {
		case authorizev1.Decision_DECISION_ALLOW:
			if r.GetAllow() == nil || r.GetReason() != authorize.ReasonAllowed {
				t.Fatalf("ALLOW without allow: %v", r)
			}
			if ok, _ := visible(r.GetAllow(), authorizev1.PolicyKind_POLICY_KIND_TOOL, tool); method == "tools/call" && !ok {
				t.Fatalf("tools/call %q allowed but not listed: %v", tool, r)
			}
		case authorizev1.Decision_DECISION_CHALLENGE:
			c := r.GetChallenge()
			if c == nil || (c.GetError() != "" && c.GetError() != authorize.ErrorInvalidToken) {
				t.Fatalf("CHALLENGE %v", r)
			}
			if len(c.GetScopes()) > 0 && r.GetPrincipal() == "" {
				t.Fatalf("scopes told to an unidentified caller: %v", r)
			}
		case authorizev1.Decision_DECISION_DENY:
			if r.GetDeny() == nil || r.GetPrincipal() == "" || r.GetRuleId() == "" {
				t.Fatalf("DENY %v (every deny names its rule)", r)
			}
		case authorizev1.Decision_DECISION_NOT_FOUND:
			if r.GetPrincipal() == "" {
				t.Fatalf("NOT_FOUND to an unidentified caller: %v", r)
			}
		default:
			t.Fatalf("decision %v", r.GetDecision())
		}
		if d.Need != authorize.NeedNothing {
			if r.GetDecision() != authorizev1.Decision_DECISION_ALLOW || d.Server == nil || d.Principal != r.GetPrincipal() {
				t.Fatalf("need %d with %v", d.Need, r)
			}
			if ch := d.Challenge(authorize.ReasonNoGrant); ch.GetDecision() != authorizev1.Decision_DECISION_CHALLENGE ||
				ch.GetReason() != authorize.ReasonNoGrant || ch.GetPrincipal() != r.GetPrincipal() || len(ch.GetChallenge().GetScopes()) == 0 {
				t.Fatalf("grant challenge %v", ch)
			}
			n := len(r.GetAllow().GetUpstreamHeaders())
			done := d.Allow("upstream-token")
			if h := done.GetAllow().GetUpstreamHeaders(); len(h) != n+1 || h[0].GetName() != "Authorization" || h[0].GetValue() != "Bearer upstream-token" {
				t.Fatalf("completed ALLOW headers %v", h)
			}
		}
		for _, h := range r.GetAllow().GetUpstreamHeaders() {
			if strings.ContainsAny(h.GetValue(), "\r\n\x00") || h.GetValue() != strings.TrimSpace(h.GetValue()) {
				t.Fatalf("unsendable header %q: %q", h.GetName(), h.GetValue())
			}
		}
	})
}
