package configapi

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strings"
	"unicode"

	"google.golang.org/protobuf/proto"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1/configv1connect"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

var _ configv1connect.IdentityProviderServiceHandler = (*Service)(nil)

var (
	idpNameRE  = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)
	scopeRE    = regexp.MustCompile(`^[\x21\x23-\x5b\x5d-\x7e]{1,128}$`) // RFC 6749 scope-token
	claimRE    = regexp.MustCompile(`^[A-Za-z0-9_:./-]{1,128}$`)
	domainRE   = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$`)
	maxIdPList = 50
)

// ListIdentityProviders implements configv1connect.IdentityProviderServiceHandler.
func (s *Service) ListIdentityProviders(ctx context.Context, _ *configv1.ListIdentityProvidersRequest) (*configv1.ListIdentityProvidersResponse, error) {
	out := &configv1.ListIdentityProvidersResponse{}
	for _, idp := range s.st.IdentityProviders() {
		out.IdentityProviders = append(out.IdentityProviders, publicIdP(idp))
	}
	return out, nil
}

// GetIdentityProvider implements configv1connect.IdentityProviderServiceHandler.
func (s *Service) GetIdentityProvider(ctx context.Context, req *configv1.GetIdentityProviderRequest) (*configv1.GetIdentityProviderResponse, error) {
	if !idpNameRE.MatchString(req.GetName()) {
		return nil, s.toConnectError(ctx, invalid("name: must match ^[a-z0-9-]{1,32}$"))
	}
	idp, ok := s.st.IdentityProvider(req.GetName())
	if !ok {
		return nil, s.toConnectError(ctx, notFound("identity provider"))
	}
	return &configv1.GetIdentityProviderResponse{IdentityProvider: publicIdP(idp)}, nil
}

// publicIdP is a copy safe to return: never the client secret.
func publicIdP(idp *store.IdentityProvider) *configv1.IdentityProvider {
	def := proto.CloneOf(idp.Def)
	def.ClientSecret = ""
	def.ClientSecretSet = idp.ClientSecret != ""
	return def
}

// PutIdentityProvider implements configv1connect.IdentityProviderServiceHandler.
func (s *Service) PutIdentityProvider(ctx context.Context, req *configv1.PutIdentityProviderRequest) (*configv1.PutIdentityProviderResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	res, changed, err := s.putIdP(ctx, req)
	if changed || err != nil {
		s.audit(ctx, "put", "identity_provider", req.GetIdentityProvider().GetName(), err)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (s *Service) putIdP(ctx context.Context, req *configv1.PutIdentityProviderRequest) (*configv1.PutIdentityProviderResponse, bool, error) {
	if req.GetIdentityProvider() == nil {
		return nil, false, s.toConnectError(ctx, invalid("identity_provider: required"))
	}
	def := proto.CloneOf(req.GetIdentityProvider())
	secret := def.GetClientSecret()
	def.ClientSecret, def.ClientSecretSet, def.Revision = "", false, 0
	if err := ValidateIdentityProvider(def, secret); err != nil {
		return nil, false, s.toConnectError(ctx, err)
	}
	cur, exists := s.st.IdentityProvider(def.GetName())
	var curRev int64
	if exists {
		curRev = cur.Def.GetRevision()
	}
	if err := checkExpected("identity provider", exists, curRev, req.GetExpectedRevision()); err != nil {
		return nil, false, s.toConnectError(ctx, err)
	}
	if exists && secret == "" {
		secret = cur.ClientSecret // an empty secret on replace keeps the stored one
	}
	if exists {
		a := proto.CloneOf(cur.Def)
		a.Revision, a.ClientSecretSet, a.ClientSecret = 0, false, ""
		if proto.Equal(a, def) && secret == cur.ClientSecret {
			return &configv1.PutIdentityProviderResponse{IdentityProvider: publicIdP(cur)}, false, nil
		}
	}
	rev, err := s.st.PutIdentityProvider(ctx, def, secret, req.GetExpectedRevision())
	if err != nil {
		return nil, false, s.toConnectError(ctx, err)
	}
	s.settle(ctx, rev)
	out := proto.CloneOf(def)
	out.ClientSecretSet, out.Revision = secret != "", rev
	return &configv1.PutIdentityProviderResponse{IdentityProvider: out, Changed: true}, true, nil
}

// DeleteIdentityProvider implements configv1connect.IdentityProviderServiceHandler.
// Sessions and tokens signed in through the provider are refused from then
// on (their source is gone).
func (s *Service) DeleteIdentityProvider(ctx context.Context, req *configv1.DeleteIdentityProviderRequest) (*configv1.DeleteIdentityProviderResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	err := s.deleteIdP(ctx, req)
	s.audit(ctx, "delete", "identity_provider", req.GetName(), err)
	if err != nil {
		return nil, err
	}
	return &configv1.DeleteIdentityProviderResponse{}, nil
}

func (s *Service) deleteIdP(ctx context.Context, req *configv1.DeleteIdentityProviderRequest) error {
	if !idpNameRE.MatchString(req.GetName()) {
		return s.toConnectError(ctx, invalid("name: must match ^[a-z0-9-]{1,32}$"))
	}
	if req.GetExpectedRevision() < 0 {
		return s.toConnectError(ctx, invalid("expected_revision: must not be negative"))
	}
	if _, ok := s.st.IdentityProvider(req.GetName()); !ok {
		return s.toConnectError(ctx, notFound("identity provider"))
	}
	rev, err := s.st.DeleteIdentityProvider(ctx, req.GetName(), req.GetExpectedRevision())
	if err != nil {
		return s.toConnectError(ctx, err)
	}
	s.settle(ctx, rev)
	s.log.InfoContext(ctx, "identity provider deleted", slog.String("name", req.GetName()))
	// Sessions and tokens signed in through it are refused from now on
	// (their source is gone); the refresh tokens it issued go at once.
	if err := s.st.DeleteIdPGrantsFor(ctx, req.GetName()); err != nil {
		s.log.WarnContext(ctx, "delete identity provider grants", slog.Any("err", err))
	}
	// So do the people's tokens kept from it for token exchanges.
	if toks, err := s.st.IdPTokens().List(ctx); err != nil {
		s.log.WarnContext(ctx, "list identity provider tokens", slog.Any("err", err))
	} else {
		for principal, rec := range toks {
			if rec.GetIdentityProvider() != req.GetName() {
				continue
			}
			if _, err := s.st.IdPTokens().Delete(ctx, principal, 0); err != nil && !errors.Is(err, store.ErrNotFound) {
				s.log.WarnContext(ctx, "delete identity provider token", slog.Any("err", err))
			}
		}
	}
	return nil
}

// cascadeIdPSignIns ends what a deleted principal signed in to through
// identity providers: its providers' refresh tokens, the IdP token kept for
// token exchanges, and its token families
// and sessions (refused on use anyway: their uid is gone).
func (s *Service) cascadeIdPSignIns(ctx context.Context, name string) {
	if err := s.st.DeleteIdPGrantsOf(ctx, name); err != nil {
		s.log.WarnContext(ctx, "delete identity provider grants of a deleted principal", slog.Any("err", err))
	}
	if _, err := s.st.IdPTokens().Delete(ctx, name, 0); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.WarnContext(ctx, "delete identity provider token of a deleted principal", slog.Any("err", err))
	}
	s.revokeTokens(ctx, name, "", "")
}

// ValidateIdentityProvider checks a definition (secret split off into
// secret). Messages never echo values.
func ValidateIdentityProvider(def *configv1.IdentityProvider, secret string) error {
	if !idpNameRE.MatchString(def.GetName()) {
		return invalid("name: must match ^[a-z0-9-]{1,32}$")
	}
	if dn := def.GetDisplayName(); len(dn) > 64 || strings.IndexFunc(dn, func(r rune) bool {
		return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Co, r)
	}) >= 0 || !utf8Valid(dn) {
		return invalid("display_name: at most 64 printable characters")
	}
	if err := validIssuer(def.GetIssuer()); err != nil {
		return err
	}
	if id := def.GetClientId(); id == "" || len(id) > 256 || strings.ContainsFunc(id, unicode.IsControl) {
		return invalid("client_id: required, at most 256 characters without control characters")
	}
	if len(secret) > 1024 || strings.ContainsFunc(secret, unicode.IsControl) {
		return invalid("client_secret: at most 1024 characters without control characters")
	}
	if len(def.GetScopes()) > maxIdPList {
		return invalid("scopes: at most %d", maxIdPList)
	}
	for _, sc := range def.GetScopes() {
		if !scopeRE.MatchString(sc) {
			return invalid("scopes: each a scope token of at most 128 characters")
		}
	}
	for field, c := range map[string]string{"principal_claim": def.GetPrincipalClaim(), "groups_claim": def.GetGroupsClaim()} {
		if c != "" && !claimRE.MatchString(c) {
			return invalid("%s: must match ^[A-Za-z0-9_:./-]{1,128}$", field)
		}
	}
	if len(def.GetAllowedDomains()) > maxIdPList {
		return invalid("allowed_domains: at most %d", maxIdPList)
	}
	for _, d := range def.GetAllowedDomains() {
		if !domainRE.MatchString(d) {
			return invalid("allowed_domains: each a lowercase domain name such as example.com")
		}
	}
	return nil
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// validIssuer: an https URL (http only on a loopback host, for the demo
// provider and tests), no query, fragment or credentials.
func validIssuer(raw string) error {
	if raw == "" {
		return invalid("issuer: required")
	}
	if len(raw) > 2000 {
		return invalid("issuer: at most 2000 characters")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Hostname() == "" {
		return invalid("issuer: not an absolute URL")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return invalid("issuer: must not contain credentials, a query or a fragment")
	}
	switch u.Scheme {
	case "https":
	case "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); h != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return invalid("issuer: must be https (http only on loopback)")
		}
	default:
		return invalid("issuer: must be https (http only on loopback)")
	}
	return nil
}
