package oauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/wire"
)

const (
	fuzzBase   = "https://gw.example"
	fuzzIssuer = "https://idp.example"
	fuzzClient = "client-1"
)

// fuzzKey is the trusted provider's signing key (P-256: fast to sign).
var fuzzKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

func fuzzSign(tb testing.TB, kid, typ string, payload []byte) string {
	opts := (&jose.SignerOptions{}).WithHeader(jose.HeaderKey("kid"), kid)
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: fuzzKey}, opts)
	if err != nil {
		tb.Fatal(err)
	}
	obj, err := sig.Sign(payload)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func fuzzInput(raw string, now time.Time) idjagInput {
	return idjagInput{
		raw: raw, base: fuzzBase, clientID: fuzzClient, now: now,
		idps: []*configv1.IdentityProvider{
			{Name: "corp", Issuer: fuzzIssuer, TrustIdJag: true},
			{Name: "people", Issuer: "https://people.example"}, // not trusted for ID-JAGs
		},
		key: func(iss, kid string) (*jose.JSONWebKey, error) {
			switch {
			case iss == fuzzIssuer && kid == "k1":
				return &jose.JSONWebKey{Key: &fuzzKey.PublicKey, KeyID: "k1", Algorithm: string(jose.ES256)}, nil
			case kid == "down":
				return nil, errIdPUnavailable
			}
			return nil, errUnknownKID
		},
	}
}

var idjagErrors = []*tokenError{errIDJAGMalformed, errIDJAGTyp, errIDJAGIssuer, errIDJAGKID, errIDJAGSignature,
	errIDJAGAudience, errIDJAGTime, errIDJAGClient, errIDJAGResource, errIDJAGUnavailable}

// FuzzCheckIDJAG: checkIDJAG is total and deterministic; a refusal is one
// of the fixed errors; an accepted assertion is signed by the trusted key,
// typed as an ID-JAG, from the trusted issuer, for this gateway and client,
// within its validity and for a route of this gateway. The fuzzer drives
// both raw strings and claim sets signed with the trusted key.
func FuzzCheckIDJAG(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	good := map[string]any{"iss": fuzzIssuer, "aud": fuzzBase, "client_id": fuzzClient, "resource": fuzzBase + "/notes/mcp",
		"sub": "u1", "jti": "j1", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
	b, _ := json.Marshal(good)
	f.Add("", b, "k1", TypIDJAG)
	f.Add("", b, "k2", TypIDJAG)
	f.Add("", b, "k1", "JWT")
	f.Add("", b, "down", TypIDJAG)
	f.Add("", []byte(`{"iss":"https://idp.example","aud":["x","https://gw.example"],"client_id":"client-1","resource":"https://gw.example/a/mcp","iat":1800000000,"exp":1800000300}`), "k1", "application/oauth-id-jag+jwt")
	f.Add("", []byte(`{"iss":"https://people.example"}`), "k1", TypIDJAG)
	f.Add("", []byte(`not json`), "k1", TypIDJAG)
	f.Add("eyJhbGciOiJub25lIn0.e30.", []byte(nil), "", "")
	f.Add("a.b.c", []byte(nil), "", "")
	f.Fuzz(func(t *testing.T, raw string, payload []byte, kid, typ string) {
		if raw == "" {
			raw = fuzzSign(t, kid, typ, payload)
		}
		cl, idp, server, terr := checkIDJAG(fuzzInput(raw, now))
		cl2, _, server2, terr2 := checkIDJAG(fuzzInput(raw, now))
		if terr != terr2 || server != server2 || (cl == nil) != (cl2 == nil) {
			t.Fatalf("not deterministic: %v/%v %q/%q", terr, terr2, server, server2)
		}
		if terr != nil {
			known := false
			for _, e := range idjagErrors {
				known = known || terr == e
			}
			if !known {
				t.Fatalf("unfixed error %+v", terr)
			}
			if idp != nil || server != "" {
				t.Fatalf("refusal with a provider or server")
			}
			return
		}
		if idp.GetName() != "corp" || cl.Issuer != fuzzIssuer || !cl.Audience.Contains(fuzzBase) || cl.ClientID != fuzzClient {
			t.Fatalf("accepted %s: idp %v claims %+v", raw, idp, cl)
		}
		if cl.Expiry == nil || cl.IssuedAt == nil || !now.Before(cl.Expiry.Time().Add(idjagLeeway)) || cl.Expiry.Time().Sub(cl.IssuedAt.Time()) > maxIDJAGLifetime {
			t.Fatalf("accepted outside its validity: %+v", cl)
		}
		if res, _ := cl.Resource.(string); res == "" || !wire.ValidServerName(server) {
			t.Fatalf("accepted resource %v → %q", cl.Resource, server)
		}
		// Only the trusted key signs what is accepted.
		if _, err := jose.ParseSignedCompact(raw, idjagAlgs); err != nil {
			t.Fatalf("accepted an unparsable JWS")
		}
	})
}

// TestCheckIDJAGAccepts: the fuzz target's valid seed is accepted (so the
// fuzzer's accept branch is reachable), for the route it names.
func TestCheckIDJAGAccepts(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	raw := fuzzSign(t, "k1", TypIDJAG, []byte(`{"iss":"https://idp.example","aud":"https://gw.example","client_id":"client-1","resource":"https://gw.example/notes/mcp","jti":"j1","iat":1800000000,"exp":1800000300}`))
	_, idp, server, terr := checkIDJAG(fuzzInput(raw, now))
	if terr != nil || idp.GetName() != "corp" || server != "notes" {
		t.Fatalf("%v %v %q", terr, idp, server)
	}
}

// BenchmarkCheckIDJAG is the cost of verifying one ID-JAG with its key
// cached (parse, typ, issuer, ES256 signature, claims): the CPU a
// jwt-bearer token request spends before its two etcd writes.
func BenchmarkCheckIDJAG(b *testing.B) {
	now := time.Unix(1_800_000_000, 0)
	raw := fuzzSign(b, "k1", TypIDJAG, []byte(`{"iss":"https://idp.example","aud":"https://gw.example","client_id":"client-1","resource":"https://gw.example/notes/mcp","jti":"j1","iat":1800000000,"exp":1800000300}`))
	in := fuzzInput(raw, now)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, terr := checkIDJAG(in); terr != nil {
			b.Fatal(terr)
		}
	}
}
