package dataplane

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"connectrpc.com/connect"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
)

const testPRM = "https://gw.example.com/.well-known/oauth-protected-resource/Gmail/mcp"

func TestMapDecision(t *testing.T) {
	allow := &authorizev1.Allow{UpstreamUrl: "http://up/mcp"}
	cases := []struct {
		name    string
		res     *authorizev1.AuthorizeResponse
		err     error
		forward bool
		status  int
		www     string
		body    string
	}{
		{name: "allow", res: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_ALLOW, Allow: allow}, forward: true},
		{name: "allow without allow", res: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_ALLOW}, status: 503, body: rpcUnavailable},
		{name: "allow without upstream", res: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_ALLOW, Allow: &authorizev1.Allow{}}, status: 503, body: rpcUnavailable},
		// An aggregate route: the data plane answers from the members'
		// decisions (dataplane/aggregate.go), nothing is forwarded as is.
		{name: "allow of an aggregate", res: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_ALLOW, Aggregate: &authorizev1.Aggregate{}}, forward: true},
		{name: "challenge with an aggregate", res: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_CHALLENGE, Challenge: &authorizev1.Challenge{}, Aggregate: &authorizev1.Aggregate{}}, status: 401, www: `Bearer resource_metadata="` + testPRM + `"`, body: rpcUnauthorized},
		{
			name:   "challenge no credential",
			res:    &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_CHALLENGE, Challenge: &authorizev1.Challenge{Scopes: []string{"gmail.read", "gmail.send"}}},
			status: 401,
			www:    `Bearer resource_metadata="` + testPRM + `", scope="gmail.read gmail.send"`,
			body:   rpcUnauthorized,
		},
		{
			name:   "challenge no scopes",
			res:    &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_CHALLENGE, Challenge: &authorizev1.Challenge{}},
			status: 401,
			www:    `Bearer resource_metadata="` + testPRM + `"`,
			body:   rpcUnauthorized,
		},
		{
			name: "challenge invalid token",
			res: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_CHALLENGE, Challenge: &authorizev1.Challenge{
				Scopes: []string{"gmail.read"}, Error: "invalid_token", ErrorDescription: `key "revoked", scope=x\y`,
			}},
			status: 401,
			www:    `Bearer resource_metadata="` + testPRM + `", scope="gmail.read", error="invalid_token", error_description="key revoked scopexy"`,
			body:   rpcUnauthorized,
		},
		{name: "challenge without challenge", res: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_CHALLENGE}, status: 503, body: rpcUnavailable},
		{name: "deny", res: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_DENY, Deny: &authorizev1.Deny{}}, status: 403, body: rpcForbidden},
		{name: "deny without deny", res: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_DENY}, status: 403, body: rpcForbidden},
		// Deny carries nothing since issue 12 (its error/scopes fields were
		// never set by the control plane): a DENY is a plain 403 whatever
		// its reason.
		{name: "deny with reason", res: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_DENY, Deny: &authorizev1.Deny{}, Reason: "tool not allowed on this server"}, status: 403, body: rpcForbidden},
		{name: "not found", res: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_NOT_FOUND}, status: 404, body: rpcUnknownServer},
		{name: "unspecified", res: &authorizev1.AuthorizeResponse{}, status: 503, body: rpcUnavailable},
		{name: "unknown number", res: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision(99), Allow: allow}, status: 503, body: rpcUnavailable},
		{name: "negative number", res: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision(-1), Allow: allow}, status: 503, body: rpcUnavailable},
		{name: "nil response", status: 503, body: rpcUnavailable},
		{name: "rpc error", err: connect.NewError(connect.CodeUnavailable, errors.New("down")), res: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_ALLOW, Allow: allow}, status: 503, body: rpcUnavailable},
		{name: "timeout", err: connect.NewError(connect.CodeDeadlineExceeded, errors.New("slow")), status: 503, body: rpcUnavailable},
	}
	covered := map[authorizev1.Decision]bool{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			covered[tc.res.GetDecision()] = true
			out := mapDecision(tc.res, tc.err, testPRM)
			if out.Forward != tc.forward {
				t.Fatalf("forward = %v, want %v", out.Forward, tc.forward)
			}
			if tc.forward {
				if out.Allow != tc.res.GetAllow() {
					t.Fatalf("allow not passed through")
				}
				return
			}
			r := out.Response
			if r.Status != tc.status || r.Body != tc.body {
				t.Fatalf("got %d %s, want %d %s", r.Status, r.Body, tc.status, tc.body)
			}
			if got := r.Header.Values("WWW-Authenticate"); tc.www == "" && len(got) != 0 || tc.www != "" && (len(got) != 1 || got[0] != tc.www) {
				t.Fatalf("WWW-Authenticate = %q, want %q", got, tc.www)
			}
			if r.Status == 503 && r.Header.Get("Retry-After") != "1" {
				t.Fatalf("503 without Retry-After")
			}
			// Every refusal, 403 and 404 included (issue 12), is never cached.
			if r.Header.Get("Cache-Control") != "no-store" || r.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("headers %v, want Cache-Control: no-store and Content-Type: application/json", r.Header)
			}
			if r.Status == http.StatusInternalServerError {
				t.Fatalf("500")
			}
		})
	}
	for v := range authorizev1.Decision_name {
		if !covered[authorizev1.Decision(v)] {
			t.Errorf("decision %v not covered by the table", authorizev1.Decision(v))
		}
	}
}

// TestMapDecisionTotal runs every enum number in a wide range, with and
// without each payload, and asserts the mapping never forwards anything but
// a complete ALLOW and never answers outside the documented statuses.
func TestMapDecisionTotal(t *testing.T) {
	payloads := []*authorizev1.AuthorizeResponse{
		{},
		{Allow: &authorizev1.Allow{UpstreamUrl: "http://up/mcp"}, Challenge: &authorizev1.Challenge{}, Deny: &authorizev1.Deny{}},
		{Aggregate: &authorizev1.Aggregate{}, Challenge: &authorizev1.Challenge{}},
	}
	for d := int32(-3); d < 64; d++ {
		for _, base := range payloads {
			res := &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision(d), Allow: base.Allow, Challenge: base.Challenge, Deny: base.Deny, Aggregate: base.Aggregate}
			out := mapDecision(res, nil, testPRM)
			if out.Forward {
				if res.GetDecision() != authorizev1.Decision_DECISION_ALLOW || res.GetAllow() == nil && res.GetAggregate() == nil {
					t.Errorf("decision %d forwarded", d)
				}
				continue
			}
			switch out.Response.Status {
			case 401, 403, 404, 503:
			default:
				t.Errorf("decision %d: status %d", d, out.Response.Status)
			}
		}
	}
}

// TestRespondHeaders asserts the exact headers of every answer the gateway
// makes itself (the respond.go family): one Content-Type, no caching, and
// only the status's own extras (WWW-Authenticate on 401, Retry-After on 429
// and 503).
func TestRespondHeaders(t *testing.T) {
	const id = "7"
	cases := []struct {
		name   string
		res    response
		status int
		extra  map[string]string
		body   string
	}{
		{"400 parse error", fixed(http.StatusBadRequest, rpcParseError), 400, nil, rpcParseError},
		{"401 challenge", challenge(testPRM, []string{"gmail.read"}, "", ""), 401,
			map[string]string{"Www-Authenticate": `Bearer resource_metadata="` + testPRM + `", scope="gmail.read"`}, rpcUnauthorized},
		{"403 deny", mapDecision(&authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_DENY, Deny: &authorizev1.Deny{}}, nil, testPRM).Response, 403, nil, rpcForbidden},
		{"403 bad host", fixed(http.StatusForbidden, bodyBadHost), 403, nil, bodyBadHost},
		{"404 not found", mapDecision(&authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_NOT_FOUND}, nil, testPRM).Response, 404, nil, rpcUnknownServer},
		{"404 no such endpoint", fixed(http.StatusNotFound, bodyNotFound), 404, nil, bodyNotFound},
		{"405", fixed(http.StatusMethodNotAllowed, bodyMethodNotAllowed), 405, nil, bodyMethodNotAllowed},
		{"413", fixed(http.StatusRequestEntityTooLarge, rpcTooLarge), 413, nil, rpcTooLarge},
		{"429", tooManyStreams(""), 429, map[string]string{"Retry-After": streamsRetryAfter}, rpcTooManyStreams},
		{"502", fixed(http.StatusBadGateway, rpcUpstreamFailed), 502, nil, rpcUpstreamFailed},
		{"503 authorize", unavailable(), 503, map[string]string{"Retry-After": "1"}, rpcUnavailable},
		{"503 relay", relayUnavailable(), 503, map[string]string{"Retry-After": "1"}, bodyUnavailable},
		{"504", fixed(http.StatusGatewayTimeout, rpcUpstreamTimeout), 504, nil, rpcUpstreamTimeout},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}}
			for k, v := range c.extra {
				want[k] = []string{v}
			}
			rec := httptest.NewRecorder()
			writeResponse(rec, c.res.withID(id))
			if rec.Code != c.status {
				t.Errorf("status %d, want %d", rec.Code, c.status)
			}
			if got := rec.Header(); !reflect.DeepEqual(got, want) {
				t.Errorf("headers %v, want %v", got, want)
			}
			if wantBody := withID(c.body, id); rec.Body.String() != wantBody {
				t.Errorf("body %s, want %s", rec.Body.String(), wantBody)
			}
		})
	}
}
