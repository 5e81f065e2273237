package grants_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/controlplane/grants"
	"github.com/mcpgate/mcpgate/ops/audit"
)

type auditBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (a *auditBuffer) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.b.Write(p)
}

// take returns the audit lines written since the last call.
func (a *auditBuffer) take() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := strings.TrimSpace(a.b.String())
	a.b.Reset()
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// TestSaveOneSemantics: the refresher and the OAuth server's store-only
// fallback saved grants differently (one kept the first connection time and
// wrote by compare-and-swap, the other reset it and refused nothing). Now
// both call grants.Save: a grant without an access token is refused, a new
// sign-in replaces whatever is stored (refreshed or marked unusable) as
// ACTIVE, and the connection keeps its create time.
func TestSaveOneSemantics(t *testing.T) {
	var ab auditBuffer
	e := newEnv(t, 1, grants.Config{Audit: audit.New(&ab)})
	st, ctx := e.stores[0], t.Context()
	if _, err := grants.Save(ctx, st, time.Now(), "alice", "notes", &oauth2.Token{}, nil, clientID); err == nil {
		t.Fatal("a grant without an access token was saved")
	}
	if _, err := grants.Save(ctx, st, time.Now(), "alice", "notes", nil, nil, clientID); err == nil {
		t.Fatal("a nil token was saved")
	}
	e.connect(t, "alice", "alice", time.Now().Add(time.Hour))
	first, err := st.GetGrant(ctx, "alice", "notes")
	if err != nil {
		t.Fatal(err)
	}
	if got := ab.take(); len(got) != 1 || !strings.Contains(got[0], `"procedure":"grants/save"`) || !strings.Contains(got[0], `"object":"alice/notes"`) {
		t.Fatalf("save audit: %q", got)
	}
	// The upstream refuses the token: the grant is marked unusable.
	if marked, err := e.grants[0].MarkUnusable(ctx, "alice", "notes"); err != nil || !marked {
		t.Fatalf("mark: %v %v", marked, err)
	}
	if got := ab.take(); len(got) != 1 || !strings.Contains(got[0], `"procedure":"grants/mark_unusable"`) {
		t.Fatalf("mark audit: %q", got)
	}
	// Marking again is a no-op (already marked).
	if marked, err := e.grants[0].MarkUnusable(ctx, "alice", "notes"); err != nil || marked {
		t.Fatalf("second mark: %v %v", marked, err)
	}
	later := time.Now().Add(time.Minute)
	rev, err := grants.Save(ctx, st, later, "alice", "notes", &oauth2.Token{AccessToken: "new-at", RefreshToken: "new-rt", Expiry: later.Add(time.Hour)},
		[]string{"notes.read"}, clientID)
	if err != nil {
		t.Fatal(err)
	}
	e.sync(t, rev)
	gr, err := st.GetGrant(ctx, "alice", "notes")
	if err != nil {
		t.Fatal(err)
	}
	if gr.Conn.GetState() != vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE || gr.Token.GetAccessToken() != "new-at" ||
		gr.Token.GetRefreshToken() != "new-rt" || !gr.Conn.GetHasRefreshToken() || strings.Join(gr.Conn.GetScopes(), " ") != "notes.read" {
		t.Fatalf("replaced grant %v", gr.Conn)
	}
	if !gr.Conn.GetCreateTime().AsTime().Equal(first.Conn.GetCreateTime().AsTime()) || !gr.Conn.GetUpdateTime().AsTime().Equal(later) {
		t.Fatalf("times: create %v (first %v), update %v (want %v)", gr.Conn.GetCreateTime().AsTime(), first.Conn.GetCreateTime().AsTime(),
			gr.Conn.GetUpdateTime().AsTime(), later)
	}
	if tok, err := e.grants[0].Token(ctx, "alice", "notes"); err != nil || tok != "new-at" {
		t.Fatalf("token after a new sign-in: %q %v", tok, err)
	}
}

// TestRefreshAudited: a refresh writes one audit event naming the grant,
// never a token.
func TestRefreshAudited(t *testing.T) {
	var ab auditBuffer
	e := newEnv(t, 1, grants.Config{Audit: audit.New(&ab)})
	old := e.connect(t, "alice", "alice", time.Now().Add(-time.Minute))
	ab.take()
	tok, err := e.grants[0].Token(t.Context(), "alice", "notes")
	if err != nil {
		t.Fatal(err)
	}
	got := ab.take()
	if len(got) != 1 || !strings.Contains(got[0], `"procedure":"grants/refresh"`) || !strings.Contains(got[0], `"object":"alice/notes"`) ||
		!strings.Contains(got[0], `"revision":`) || strings.Contains(got[0], tok) || strings.Contains(got[0], old.RefreshToken) {
		t.Fatalf("refresh audit: %q", got)
	}
}
