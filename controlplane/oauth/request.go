package oauth

import (
	"context"
	"encoding/base64"
	"errors"
	"net/url"
	"time"

	"google.golang.org/protobuf/proto"

	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// Pending authorization requests.
//
// /authorize is anonymous, so it stores nothing: the validated request
// (client, redirect URI, state, PKCE challenge, route, scopes, expiry) is
// sealed with the store's vault keyring (AEAD, shared by every replica) and
// travels through the sign-in and consent pages as the "request" value.
// Opening checks integrity and expiry. The request becomes single-use only
// once a signed-in person answers it: its first use writes a small marker
// (the SHA-256 id of the sealed value, on a lease that ends with the
// request), and a second use finds the marker.

// Caps of what an anonymous /authorize request may carry, in bytes.
const (
	// maxAuthorizeQuery bounds the whole query string.
	maxAuthorizeQuery = 8 << 10
	// maxSealedRequest bounds a sealed pending request: the caps below,
	// the client name (at most 200), the route and its scopes, sealed
	// and base64url-encoded, with room to spare.
	maxSealedRequest = 16 << 10
	// maxParam caps any parameter not listed in paramCaps (nonce, prompt…).
	maxParam = 512
)

// paramCaps caps each authorization request parameter.
var paramCaps = map[string]int{
	"response_type":         16,
	"client_id":             2000,
	"redirect_uri":          2000,
	"state":                 1024,
	"scope":                 1000,
	"code_challenge":        128,
	"code_challenge_method": 16,
	"resource":              2000,
}

// overCap returns the first parameter whose name or a value is over its cap.
func overCap(q url.Values) (string, bool) {
	for k, vs := range q {
		limit, known := paramCaps[k]
		if !known {
			limit = maxParam
			if len(k) > maxParam {
				return "parameter name", false
			}
		}
		for _, v := range vs {
			if len(v) > limit {
				if !known {
					return "parameter", false
				}
				return k, false
			}
		}
	}
	return "", true
}

// requestAD binds sealed requests to their use.
var requestAD = []byte("mcpgate/oauth-request/v1")

var (
	errRequestTooLarge = errors.New("authorization request too large")
	errRequestGone     = errors.New("authorization request expired, used or invalid")
)

// sealRequest seals a pending authorization request.
func (s *Server) sealRequest(auth *storev1.OAuthAuthorization) (string, error) {
	b, err := proto.Marshal(auth)
	if err != nil {
		return "", err
	}
	ct, err := s.st.Seal(b, requestAD)
	if err != nil {
		return "", err
	}
	v := base64.RawURLEncoding.EncodeToString(ct)
	if len(v) > maxSealedRequest {
		return "", errRequestTooLarge
	}
	return v, nil
}

// openRequest opens a sealed pending request that has not expired.
func (s *Server) openRequest(v string) (*storev1.OAuthAuthorization, error) {
	if v == "" || len(v) > maxSealedRequest {
		return nil, errRequestGone
	}
	// Strict: one spelling per value, so the used marker (keyed by the
	// ciphertext anyway) cannot be sidestepped by re-encoding.
	ct, err := base64.RawURLEncoding.Strict().DecodeString(v)
	if err != nil {
		return nil, errRequestGone
	}
	b, err := s.st.Open(ct, requestAD)
	if err != nil {
		return nil, errRequestGone
	}
	var a storev1.OAuthAuthorization
	if proto.Unmarshal(b, &a) != nil || !s.now().Before(a.GetExpireTime().AsTime()) {
		return nil, errRequestGone
	}
	return &a, nil
}

// takeRequest opens a sealed pending request and marks it used; it is
// called only for a signed-in person. A request used before is gone.
func (s *Server) takeRequest(ctx context.Context, v string) (*storev1.OAuthAuthorization, error) {
	a, err := s.openRequest(v)
	if err != nil {
		return nil, err
	}
	ct, _ := base64.RawURLEncoding.Strict().DecodeString(v)
	ttl := a.GetExpireTime().AsTime().Sub(s.now()) + time.Second
	if _, err := s.st.MarkOAuthRequestUsed(ctx, secretID(string(ct)), ttl); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, errRequestGone
		}
		return nil, err
	}
	return a, nil
}
