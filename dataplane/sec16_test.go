package dataplane

import (
	"testing"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
)

// Issue 8 item 16b: anonymous callers are challenged on unknown routes like
// on configured ones; the control plane flags the route as unknown so that
// arbitrary route names never become metric labels.
func TestSec16UnknownRouteIsNotALabel(t *testing.T) {
	for _, c := range []struct {
		name       string
		res        *authorizev1.AuthorizeResponse
		configured bool
	}{
		{"challenge on a configured route", &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_CHALLENGE, Challenge: &authorizev1.Challenge{}}, true},
		{"challenge on an unknown route", &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_CHALLENGE, Challenge: &authorizev1.Challenge{}, UnknownRoute: true}, false},
		{"not found, unknown route", &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_NOT_FOUND, UnknownRoute: true}, false},
		{"not found, not granted", &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_NOT_FOUND}, false},
		{"allow", &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_ALLOW, Allow: &authorizev1.Allow{UpstreamUrl: "http://u"}}, true},
	} {
		i := &reqInfo{}
		i.decided(c.res, nil)
		if i.configured != c.configured {
			t.Errorf("%s: configured = %v, want %v", c.name, i.configured, c.configured)
		}
	}
	// The answer itself does not depend on the flag.
	res := &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_CHALLENGE, Challenge: &authorizev1.Challenge{}}
	a := mapDecision(res, nil, "https://gw.example/.well-known/oauth-protected-resource/x/mcp")
	res.UnknownRoute = true
	b := mapDecision(res, nil, "https://gw.example/.well-known/oauth-protected-resource/x/mcp")
	if a.Response.Status != 401 || a.Response.Status != b.Response.Status || a.Response.Body != b.Response.Body ||
		a.Response.Header.Get("WWW-Authenticate") != b.Response.Header.Get("WWW-Authenticate") ||
		a.Response.Header.Get("WWW-Authenticate") != `Bearer resource_metadata="https://gw.example/.well-known/oauth-protected-resource/x/mcp"` {
		t.Errorf("answers differ: %+v vs %+v", a.Response, b.Response)
	}
}
