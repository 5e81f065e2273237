package configapi_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
	"github.com/mcpgate/mcpgate/controlplane/configapi"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// BenchmarkRevocationPropagation measures the time from a RevokeKey answer
// on one replica to the key being refused by another replica's cache.
func BenchmarkRevocationPropagation(b *testing.B) {
	e := newEnv(b)
	other := e.newReplica()
	ctx := b.Context()
	e.putPrincipal("bench", configv1.Role_ROLE_ADMIN)
	for b.Loop() {
		b.StopTimer()
		key, meta := e.createKey("bench")
		benchWait(b, "the new key on the other replica", 100*time.Microsecond, func() bool {
			_, _, s := configapi.ResolveKey(other.st, key, time.Now())
			return s == configapi.KeyValid
		})
		b.StartTimer()
		if _, err := e.admin().keys.RevokeKey(ctx, &configv1.RevokeKeyRequest{Id: meta.GetId()}); err != nil {
			b.Fatal(err)
		}
		benchWait(b, "the revocation on the other replica", 50*time.Microsecond, func() bool {
			_, _, s := configapi.ResolveKey(other.st, key, time.Now())
			return s == configapi.KeyRevoked
		})
	}
}

// BenchmarkResolveKey measures the cached key lookup every admin request
// (and Authorize) pays.
func BenchmarkResolveKey(b *testing.B) {
	e := newEnv(b)
	now := time.Now()
	for b.Loop() {
		if _, _, s := configapi.ResolveKey(e.st, e.adminKey, now); s != configapi.KeyValid {
			b.Fatal(s)
		}
	}
}

// BenchmarkTokenRevocationPropagation measures the time from a RevokeKey
// answer on one replica to another replica's Authorize refusing a gateway
// access token obtained with that key (issue 8 item 6): the token's source
// check is a lookup in the same cache that key revocation reaches.
func BenchmarkTokenRevocationPropagation(b *testing.B) {
	e := newEnv(b)
	other := e.newReplica()
	ctx := b.Context()
	e.putPrincipal("bench", configv1.Role_ROLE_MEMBER)
	rev, err := e.st.PutServer(ctx, &configv1.McpServer{Name: "none", Url: "https://upstream.example/mcp", AuthType: configv1.AuthType_AUTH_TYPE_NONE}, nil, 0)
	if err != nil {
		b.Fatal(err)
	}
	if err := other.st.WaitRevision(ctx, rev); err != nil {
		b.Fatal(err)
	}
	p, _ := e.st.Principal("bench")
	const base = "https://gw.example.com"
	decide := func(tok string) *authorizev1.AuthorizeResponse {
		d, err := authorize.Decide(other.st, time.Now(), &authorizev1.AuthorizeRequest{Route: "none", PublicBaseUrl: base, HttpMethod: "POST",
			Credentials: &authorizev1.Credentials{BearerToken: tok}})
		if err != nil {
			b.Fatal(err)
		}
		return d.Response
	}
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		_, meta := e.createKey("bench")
		tok := fmt.Sprintf("mcpgt_bench_%d", i)
		if _, err := e.st.PutAccessToken(ctx, store.HashKey(tok), &storev1.AccessTokenRecord{
			Principal: "bench", PrincipalUid: p.GetUid(), Route: "none", KeyId: meta.GetId(),
			Audience: wire.ResourceURL(base, "none"), ExpireTime: timestamppb.New(time.Now().Add(time.Hour)),
		}); err != nil {
			b.Fatal(err)
		}
		benchWait(b, "the token allowed", 100*time.Microsecond, func() bool {
			return decide(tok).GetDecision() == authorizev1.Decision_DECISION_ALLOW
		})
		b.StartTimer()
		if _, err := e.admin().keys.RevokeKey(ctx, &configv1.RevokeKeyRequest{Id: meta.GetId()}); err != nil {
			b.Fatal(err)
		}
		benchWait(b, "the token's key revoked", 50*time.Microsecond, func() bool {
			return decide(tok).GetReason() == authorize.ReasonTokenSourceRevoked
		})
	}
}

// benchWait polls cond every interval until it holds; the deadline is a
// hang guard, not a measurement.
func benchWait(b *testing.B, what string, interval time.Duration, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(interval)
	}
}
