package authorizeapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"

	"connectrpc.com/connect"

	"github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1/authorizev1connect"
)

// NewHandler mounts svc behind data-plane authentication: every call must
// carry Authorization: Bearer <one of tokens>, or arrive over TLS with a
// verified client certificate (the server's ClientCAs decide whose). Anyone
// else gets unauthenticated: responses carry upstream secrets.
func NewHandler(svc authorizev1connect.AuthorizeServiceHandler, tokens []string, opts ...connect.HandlerOption) (string, http.Handler) {
	opts = append([]connect.HandlerOption{connect.WithInterceptors(NewAuthInterceptor(tokens))}, opts...)
	path, h := authorizev1connect.NewAuthorizeServiceHandler(svc, opts...)
	return path, WithPeerCertificate(h)
}

type verifiedPeerKey struct{}

// WithPeerCertificate marks the context of requests that came over TLS with
// a verified client certificate chain, for the auth interceptor.
func WithPeerCertificate(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
			r = r.WithContext(context.WithValue(r.Context(), verifiedPeerKey{}, true))
		}
		h.ServeHTTP(w, r)
	})
}

// NewAuthInterceptor rejects calls without a data-plane credential. Empty
// tokens are ignored; with none configured only verified mTLS peers pass.
func NewAuthInterceptor(tokens []string) connect.Interceptor {
	a := &dataPlaneAuth{}
	for _, t := range tokens {
		if t != "" {
			a.sums = append(a.sums, sha256.Sum256([]byte(t)))
		}
	}
	return a
}

type dataPlaneAuth struct {
	sums [][32]byte
}

var errUnauthenticated = errors.New("data-plane credential required")

func (a *dataPlaneAuth) ok(ctx context.Context, h http.Header) bool {
	if v, _ := ctx.Value(verifiedPeerKey{}).(bool); v {
		return true
	}
	scheme, tok, found := strings.Cut(h.Get("Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return false
	}
	// Hashing first makes the comparison independent of the token's length.
	sum := sha256.Sum256([]byte(tok))
	match := 0
	for i := range a.sums {
		match |= subtle.ConstantTimeCompare(sum[:], a.sums[i][:])
	}
	return match == 1
}

func (a *dataPlaneAuth) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		if !a.ok(ctx, req.Header()) {
			return nil, connect.NewError(connect.CodeUnauthenticated, errUnauthenticated)
		}
		return next(ctx, req)
	}
}

func (a *dataPlaneAuth) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (a *dataPlaneAuth) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if !a.ok(ctx, conn.RequestHeader()) {
			return connect.NewError(connect.CodeUnauthenticated, errUnauthenticated)
		}
		return next(ctx, conn)
	}
}

// RequireDataPlane guards a plain HTTP handler (the relayed OAuth
// authorization server) with the same data-plane credential as the RPC:
// anyone else gets 401 with a fixed body.
func RequireDataPlane(tokens []string, h http.Handler) http.Handler {
	a := NewAuthInterceptor(tokens).(*dataPlaneAuth)
	return WithPeerCertificate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.ok(r.Context(), r.Header) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"data-plane credential required"}` + "\n"))
			return
		}
		h.ServeHTTP(w, r)
	}))
}
