package dataplane

import (
	"context"
	"net/http"
	"time"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	"github.com/mcpgate/mcpgate/ops/audit"
	"github.com/mcpgate/mcpgate/ops/metrics"
)

// reqInfo collects, while one MCP request is served, what its metrics and
// its audit event need. Only ServeHTTP's goroutine touches it.
type reqInfo struct {
	route      string
	configured bool // the control plane knows the route
	method     string
	tool       string
	decision   string // a metrics.Decision* label
	reason     string
	rule       string // the policy rule behind a deny
	limit      string // the rate limit behind a RATE_LIMITED
	principal  string
	keyID      string
	session    string // the gateway session handle the client sent
	upstream   int    // upstream status, 0 when not forwarded
	authCalls  int    // decisions the request needed
	cacheHits  int    // of them, reused from the decision cache
}

type infoKey struct{}

func withInfo(r *http.Request, route string) (*http.Request, *reqInfo) {
	info := &reqInfo{route: route, decision: metrics.DecisionRejected, session: r.Header.Get(headerSessionID)}
	return r.WithContext(context.WithValue(r.Context(), infoKey{}, info)), info
}

// infoFrom returns the request's info, or a throwaway one (never nil).
func infoFrom(ctx context.Context) *reqInfo {
	if i, ok := ctx.Value(infoKey{}).(*reqInfo); ok {
		return i
	}
	return &reqInfo{}
}

// decided records the outcome of Authorize.
func (i *reqInfo) decided(res *authorizev1.AuthorizeResponse, err error) {
	i.decision = decisionLabel(res, err)
	i.configured = err == nil && !res.GetUnknownRoute() && res.GetDecision() != authorizev1.Decision_DECISION_NOT_FOUND &&
		res.GetDecision() != authorizev1.Decision_DECISION_UNSPECIFIED
	i.principal, i.reason, i.rule = res.GetPrincipal(), res.GetReason(), res.GetRuleId()
	i.limit = limitOf(res)
	i.keyID = res.GetKeyId() // the control plane resolved it; the key is never hashed here
	if err != nil {
		i.reason = "control plane unavailable"
	}
}

// memberRefused records that the member an aggregate routed the call to
// refused it (DENY or RATE_LIMITED): the request's event carries the
// member's decision, reason, rule and limit, not the aggregate's ALLOW.
func (i *reqInfo) memberRefused(res *authorizev1.AuthorizeResponse) {
	i.decision = metrics.DecisionOf(res.GetDecision())
	i.reason, i.rule, i.limit = res.GetReason(), res.GetRuleId(), limitOf(res)
}

// limitOf is the id of the limit behind a RATE_LIMITED, as the client is
// told it: by the same grammar (another value is never recorded).
func limitOf(res *authorizev1.AuthorizeResponse) string {
	if rl := res.GetRateLimited(); rl != nil && res.GetDecision() == authorizev1.Decision_DECISION_RATE_LIMITED {
		id, _, _ := rateLimitedParts(rl)
		return id
	}
	return ""
}

func decisionLabel(res *authorizev1.AuthorizeResponse, err error) string {
	if err != nil {
		return metrics.DecisionError
	}
	return metrics.DecisionOf(res.GetDecision())
}

// observe records one finished MCP request.
func (p *Proxy) observe(info *reqInfo, status int, session string, d time.Duration) {
	p.metrics.RecordRequest(metrics.Request{
		Route: info.route, Configured: info.configured, Method: info.method,
		Decision: info.decision, Status: status, Duration: d,
	})
	if info.session == "" {
		info.session = session // a session the upstream just opened
	}
	_ = p.audit.Request(audit.Request{
		Principal: info.principal, KeyID: info.keyID, Route: info.route,
		Method: info.method, Tool: info.tool, Decision: info.decision, Reason: info.reason, Rule: info.rule, Limit: info.limit,
		Status: status, Upstream: info.upstream, Latency: d,
		SessionID: info.session, DataPlane: p.publicBase,
		Cached: info.authCalls > 0 && info.cacheHits == info.authCalls,
	})
}
