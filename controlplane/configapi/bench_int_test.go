package configapi_test

import (
	"testing"
	"time"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/controlplane/configapi"
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
		for {
			if _, _, s := configapi.ResolveKey(other.st, key, time.Now()); s == configapi.KeyValid {
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
		b.StartTimer()
		if _, err := e.admin().keys.RevokeKey(ctx, &configv1.RevokeKeyRequest{Id: meta.GetId()}); err != nil {
			b.Fatal(err)
		}
		for {
			if _, _, s := configapi.ResolveKey(other.st, key, time.Now()); s == configapi.KeyRevoked {
				break
			}
			time.Sleep(50 * time.Microsecond)
		}
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
