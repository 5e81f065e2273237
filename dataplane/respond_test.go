package dataplane

import (
	"encoding/json"
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
		{
			name: "deny insufficient scope (step-up)",
			res: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_DENY, Deny: &authorizev1.Deny{
				InsufficientScope: &authorizev1.InsufficientScope{Scopes: []string{"gmail.read", "gmail.send"}}}},
			status: 403,
			www:    `Bearer error="insufficient_scope", scope="gmail.read gmail.send", resource_metadata="` + testPRM + `"`,
			body:   rpcInsufficientScope,
		},
		{
			name: "deny insufficient scope scrubbed",
			res: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_DENY, Deny: &authorizev1.Deny{
				InsufficientScope: &authorizev1.InsufficientScope{Scopes: []string{`a"b`, "c,d=e"}}}},
			status: 403,
			www:    `Bearer error="insufficient_scope", scope="ab cde", resource_metadata="` + testPRM + `"`,
			body:   rpcInsufficientScope,
		},
		{name: "deny with reason", res: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_DENY, Deny: &authorizev1.Deny{}, Reason: "tool not allowed on this server"}, status: 403, body: rpcForbidden},
		{name: "not found", res: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_NOT_FOUND}, status: 404, body: rpcUnknownServer},
		{
			name:   "rate limited",
			res:    &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_RATE_LIMITED, RateLimited: &authorizev1.RateLimited{LimitId: "writes", RetryAfterSeconds: 42, Window: "minute"}},
			status: 429,
			body:   `{"jsonrpc":"2.0","id":null,"error":{"code":-32029,"message":"rate limit writes exceeded; retry in 42 s","data":{"limit_id":"writes","window":"minute","retry_after_seconds":42}}}`,
		},
		{name: "rate limited without rate limited", res: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_RATE_LIMITED}, status: 503, body: rpcUnavailable},
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
			if r.Status == 429 && r.Header.Get("Retry-After") != "42" {
				t.Fatalf("429 Retry-After = %q, want 42", r.Header.Get("Retry-After"))
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
		{Allow: &authorizev1.Allow{UpstreamUrl: "http://up/mcp"}, Challenge: &authorizev1.Challenge{}, Deny: &authorizev1.Deny{}, RateLimited: &authorizev1.RateLimited{}},
		{Aggregate: &authorizev1.Aggregate{}, Challenge: &authorizev1.Challenge{}},
	}
	for d := int32(-3); d < 64; d++ {
		for _, base := range payloads {
			res := &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision(d), Allow: base.Allow, Challenge: base.Challenge, Deny: base.Deny, RateLimited: base.RateLimited, Aggregate: base.Aggregate}
			out := mapDecision(res, nil, testPRM)
			if out.Forward {
				if res.GetDecision() != authorizev1.Decision_DECISION_ALLOW || res.GetAllow() == nil && res.GetAggregate() == nil {
					t.Errorf("decision %d forwarded", d)
				}
				continue
			}
			switch out.Response.Status {
			case 401, 403, 404, 429, 503:
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
		{"429 rate limited", rateLimited(&authorizev1.RateLimited{LimitId: "per-day", RetryAfterSeconds: 3600, Window: "day"}), 429, map[string]string{"Retry-After": "3600"},
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32029,"message":"rate limit per-day exceeded; retry in 3600 s","data":{"limit_id":"per-day","window":"day","retry_after_seconds":3600}}}`},
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

// TestRateLimitedAnswers asserts the exact 429 bodies and Retry-After for
// every shape of RATE_LIMITED the control plane could send, hostile ones
// included: the limit id is echoed only when it is a name by api/wire's
// grammar, the window only when it is one of the three, and the delay is
// clamped to [1, 86400] seconds.
func TestRateLimitedAnswers(t *testing.T) {
	cases := []struct {
		name  string
		rl    *authorizev1.RateLimited
		retry string
		body  string
	}{
		{"plain", &authorizev1.RateLimited{LimitId: "w_1", RetryAfterSeconds: 1, Window: "second"}, "1",
			`{"jsonrpc":"2.0","id":7,"error":{"code":-32029,"message":"rate limit w_1 exceeded; retry in 1 s","data":{"limit_id":"w_1","window":"second","retry_after_seconds":1}}}`},
		{"zero delay", &authorizev1.RateLimited{LimitId: "a", Window: "minute"}, "1",
			`{"jsonrpc":"2.0","id":7,"error":{"code":-32029,"message":"rate limit a exceeded; retry in 1 s","data":{"limit_id":"a","window":"minute","retry_after_seconds":1}}}`},
		{"huge delay", &authorizev1.RateLimited{LimitId: "a", RetryAfterSeconds: 1 << 40, Window: "day"}, "86400",
			`{"jsonrpc":"2.0","id":7,"error":{"code":-32029,"message":"rate limit a exceeded; retry in 86400 s","data":{"limit_id":"a","window":"day","retry_after_seconds":86400}}}`},
		{"hostile id and window", &authorizev1.RateLimited{LimitId: `x","secret":"y`, RetryAfterSeconds: 5, Window: "week\\"}, "5",
			`{"jsonrpc":"2.0","id":7,"error":{"code":-32029,"message":"rate limit exceeded; retry in 5 s","data":{"limit_id":"","window":"","retry_after_seconds":5}}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := mapDecision(&authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_RATE_LIMITED, RateLimited: c.rl}, nil, testPRM)
			rec := httptest.NewRecorder()
			writeResponse(rec, out.Response.withID("7"))
			if rec.Code != 429 || rec.Header().Get("Retry-After") != c.retry || rec.Body.String() != c.body {
				t.Fatalf("got %d Retry-After %q %s\nwant 429 Retry-After %q %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body.String(), c.retry, c.body)
			}
			if !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("body is not JSON")
			}
		})
	}
}

// TestRateLimitedToolResult asserts the tool error result answering a
// rate-limited tools/call inside an SSE stream: the request's id, one text
// content naming the limit and the delay, isError true.
func TestRateLimitedToolResult(t *testing.T) {
	rl := &authorizev1.RateLimited{LimitId: "writes", RetryAfterSeconds: 12, Window: "minute"}
	cases := []struct{ id, want string }{
		{`"call-1"`, `{"jsonrpc":"2.0","id":"call-1","result":{"content":[{"type":"text","text":"rate limit writes exceeded; retry in 12 s"}],"isError":true}}`},
		{`3`, `{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"rate limit writes exceeded; retry in 12 s"}],"isError":true}}`},
		{``, `{"jsonrpc":"2.0","id":null,"result":{"content":[{"type":"text","text":"rate limit writes exceeded; retry in 12 s"}],"isError":true}}`},
	}
	for _, c := range cases {
		got := rateLimitedToolResult(c.id, rl)
		if got != c.want {
			t.Errorf("id %s: got %s, want %s", c.id, got, c.want)
		}
		var msg struct {
			Result struct {
				Content []struct{ Type, Text string }
				IsError bool
			}
		}
		if err := json.Unmarshal([]byte(got), &msg); err != nil || !msg.Result.IsError || len(msg.Result.Content) != 1 {
			t.Errorf("id %s: not a tool error result: %v %+v", c.id, err, msg)
		}
	}
}
