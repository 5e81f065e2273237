package configapi

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1/configv1connect"
	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
	"github.com/mcpgate/mcpgate/controlplane/limits"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

var _ configv1connect.ExplainServiceHandler = (*Service)(nil)

// Explain decisions, as ExplainResponse.decision spells them.
const (
	ExplainAllow     = "allow"
	ExplainChallenge = "challenge"
	ExplainDeny      = "deny"
	ExplainNotFound  = "not_found"
	// ExplainRateLimited: allowed, but a rate limit or quota that applies
	// has nothing left in its window now.
	ExplainRateLimited = "rate_limited"
)

// maxExplainName bounds a tool, resource or prompt name to explain.
const maxExplainName = 1024

// Explain implements configv1connect.ExplainServiceHandler: the decision
// the principal would get for the call and every step behind it, from the
// cached state only (authorize.Explain). It never calls an upstream,
// consumes quota or writes: an upstream credential an ALLOW needs is not
// obtained, only looked up (a missing or unusable vault grant is the
// CHALLENGE the call would get).
func (s *Service) Explain(ctx context.Context, req *configv1.ExplainRequest) (*configv1.ExplainResponse, error) {
	areq, err := explainRequest(req)
	if err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	var tr authorize.Trace
	d, err := authorize.Explain(s.st, req.GetPrincipal(), areq, &tr)
	switch {
	case errors.Is(err, authorize.ErrUnknownPrincipal):
		return nil, s.toConnectError(ctx, notFound("principal"))
	case errors.Is(err, authorize.ErrMisconfigured):
		return nil, s.toConnectError(ctx, &publicError{code: connect.CodeFailedPrecondition, msg: "server misconfigured: its auth mode cannot produce an upstream credential"})
	case err != nil:
		return nil, s.toConnectError(ctx, err)
	}
	res := d.Response
	decision := explainDecision(res.GetDecision())
	reason := res.GetReason()
	if d.Need == authorize.NeedVaultGrant {
		g, ok := s.st.Grant(d.Principal, d.Server.Def.GetName())
		switch {
		case !ok:
			tr.Add(authorize.StepAuth, "oauth2 authorization_code", "no vault grant: the person must sign in upstream")
			decision, reason = ExplainChallenge, authorize.ReasonNoGrant
		case g.Conn.GetState() != vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE:
			tr.Add(authorize.StepAuth, "oauth2 authorization_code", "vault grant needs re-authorization")
			decision, reason = ExplainChallenge, authorize.ReasonGrantUnusable
		default:
			tr.Add(authorize.StepAuth, "oauth2 authorization_code", "vault grant exists (active)")
		}
	}
	if d.Need == authorize.NeedTokenExchange {
		ok, detail := s.exchangeReady(ctx, d.Principal, d.Server.Def.GetName())
		tr.Add(authorize.StepAuth, "oauth2 token_exchange", detail)
		if !ok {
			decision, reason = ExplainChallenge, authorize.ReasonNoGrant
		}
	}
	if decision == ExplainAllow {
		limited, err := s.explainLimits(ctx, req, &tr)
		if err != nil {
			return nil, s.toConnectError(ctx, err)
		}
		if limited != "" {
			decision, reason = ExplainRateLimited, "rate limit "+limited+" exhausted"
		}
	}
	out := &configv1.ExplainResponse{Decision: decision, Reason: reason, RuleId: res.GetRuleId()}
	for _, st := range tr.Steps {
		out.Steps = append(out.Steps, &configv1.ExplainStep{Kind: string(st.Kind), Subject: st.Subject, Detail: st.Detail})
	}
	return out, nil
}

// exchangeReady tells whether a token_exchange call of principal on
// server would find something to exchange (or an exchanged token still
// cached), reading only: it unseals the stored identity provider token to
// read its expiry, never exchanges it.
func (s *Service) exchangeReady(ctx context.Context, principal, server string) (bool, string) {
	p, ok := s.st.Principal(principal)
	if !ok {
		return false, "principal gone"
	}
	if rec, _, err := s.st.ExchangedTokens().Get(ctx, store.ExchangedTokenName(principal, server)); err == nil && rec.GetPrincipalUid() == p.GetUid() {
		return true, "exchanged token cached"
	}
	rec, tok, err := s.st.IdPToken(ctx, principal)
	switch {
	case err != nil || rec.GetPrincipalUid() != p.GetUid():
		return false, "no identity provider token: the person must sign in with the identity provider"
	case tok.GetExpiry() != nil && !s.now().Before(tok.GetExpiry().AsTime()):
		return false, "identity provider token expired: the person must sign in with the identity provider again"
	}
	return true, "identity provider token of " + rec.GetIdentityProvider() + " stored, exchanged at call time"
}

// explainRequest turns an ExplainRequest into the AuthorizeRequest the
// call would make.
func explainRequest(req *configv1.ExplainRequest) (*authorizev1.AuthorizeRequest, error) {
	if err := validName("principal", req.GetPrincipal()); err != nil {
		return nil, err
	}
	if err := validName("server", req.GetServer()); err != nil {
		return nil, err
	}
	set := 0
	for _, v := range []string{req.GetTool(), req.GetResource(), req.GetPrompt()} {
		if v != "" {
			set++
		}
	}
	if set > 1 {
		return nil, invalid("tool, resource, prompt: at most one")
	}
	method := req.GetMethod()
	for _, t := range []struct{ v, method string }{
		{req.GetTool(), "tools/call"}, {req.GetResource(), "resources/read"}, {req.GetPrompt(), "prompts/get"},
	} {
		if t.v == "" {
			continue
		}
		if len(t.v) > maxExplainName || strings.ContainsFunc(t.v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return nil, invalid("tool, resource, prompt: longer than 1024 bytes or holds control characters")
		}
		if method == "" {
			method = t.method
		}
		if method != t.method {
			return nil, invalid("method: does not match the tool, resource or prompt given")
		}
	}
	switch {
	case method == "":
		return nil, invalid("method: required without a tool, resource or prompt")
	case len(method) > 128 || strings.ContainsFunc(method, func(r rune) bool { return r <= 0x20 || r >= 0x7f }):
		return nil, invalid("method: not a JSON-RPC method name")
	}
	return &authorizev1.AuthorizeRequest{
		Route: req.GetServer(), HttpMethod: "POST", JsonrpcMethod: method,
		ToolName: req.GetTool(), ResourceUri: req.GetResource(), PromptName: req.GetPrompt(),
	}, nil
}

func explainDecision(d authorizev1.Decision) string {
	switch d {
	case authorizev1.Decision_DECISION_ALLOW:
		return ExplainAllow
	case authorizev1.Decision_DECISION_CHALLENGE:
		return ExplainChallenge
	case authorizev1.Decision_DECISION_DENY:
		return ExplainDeny
	case authorizev1.Decision_DECISION_NOT_FOUND:
		return ExplainNotFound
	}
	return "unspecified"
}

// explainLimits adds a step for every rate limit that applies to the call
// (principal × server × tool) with its usage now, without counting
// anything; it returns the id of one whose window is used up, if any.
func (s *Service) explainLimits(ctx context.Context, req *configv1.ExplainRequest, tr *authorize.Trace) (string, error) {
	p, ok := s.st.Principal(req.GetPrincipal())
	if !ok {
		return "", notFound("principal")
	}
	groups := limits.Groups(p)
	var applying []*configv1.RateLimit
	for _, l := range s.limiter.Limits() {
		if limits.AppliesTo(l, p.GetName(), groups, req.GetServer(), req.GetTool()) {
			applying = append(applying, l)
		}
	}
	if len(applying) == 0 {
		tr.Add(authorize.StepLimit, "none", "no rate limit applies")
		return "", nil
	}
	usage, err := s.limiter.Usage(ctx, p)
	if err != nil {
		return "", err
	}
	exhausted := ""
	for _, l := range applying {
		for _, u := range usage {
			if u.LimitID != l.GetId() || (u.Server != req.GetServer() && u.Server != "*") {
				continue
			}
			tr.Add(authorize.StepLimit, l.GetId(), fmt.Sprintf("%d of %d per %s used, %d left, window resets in %d s", u.Used, u.Limit, u.Window, u.Remaining, u.Reset))
			if u.Remaining <= 0 && exhausted == "" {
				exhausted = l.GetId()
			}
		}
	}
	return exhausted, nil
}
