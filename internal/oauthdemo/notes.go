package oauthdemo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// PRMPath is where the protected resource metadata (RFC 9728) of a resource
// served at resourcePath lives.
func PRMPath(resourcePath string) string {
	return "/.well-known/oauth-protected-resource" + strings.TrimSuffix(resourcePath, "/")
}

// NoteInput is add_note's argument.
type NoteInput struct {
	Text string `json:"text" jsonschema:"the note to keep"`
}

// WhoamiOutput is whoami's result.
type WhoamiOutput struct {
	User   string   `json:"user"`
	Scopes []string `json:"scopes"`
}

// NotesOutput is list_notes's result.
type NotesOutput struct {
	Notes []string `json:"notes"`
}

type notebook struct {
	mu    sync.Mutex
	notes map[string][]string // user → notes
}

// NotesServer returns an MCP server (Streamable HTTP) whose every request
// needs `Authorization: Bearer <access token from p>`; without one it
// answers 401 with `WWW-Authenticate: Bearer resource_metadata="<its PRM>"`.
// It serves its own RFC 9728 metadata at PRMPath(path of resourceURL), naming
// p's issuer as its authorization server. Tools: whoami, add_note,
// list_notes; notes are kept per upstream user.
func NotesServer(p *Provider, resourceURL string, log *slog.Logger) http.Handler {
	u, err := url.Parse(resourceURL)
	if err != nil {
		panic(fmt.Sprintf("oauthdemo: bad resource URL %q: %v", resourceURL, err))
	}
	prmPath := PRMPath(u.Path)
	prmURL := u.Scheme + "://" + u.Host + prmPath
	nb := &notebook{notes: map[string][]string{}}

	srv := mcp.NewServer(&mcp.Implementation{Name: "mcpgate-demo-notes", Version: "1.0.0"}, &mcp.ServerOptions{Logger: log})
	mcp.AddTool(srv, &mcp.Tool{Name: "whoami", Description: "Returns the provider user the access token belongs to."},
		func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, WhoamiOutput, error) {
			ti := req.Extra.TokenInfo
			return nil, WhoamiOutput{User: ti.UserID, Scopes: ti.Scopes}, nil
		})
	mcp.AddTool(srv, &mcp.Tool{Name: "add_note", Description: "Keeps a note for the signed-in user."},
		func(_ context.Context, req *mcp.CallToolRequest, in NoteInput) (*mcp.CallToolResult, NotesOutput, error) {
			if !hasScope(req.Extra.TokenInfo, "notes.write") {
				return nil, NotesOutput{}, errors.New("the token lacks scope notes.write")
			}
			if strings.TrimSpace(in.Text) == "" {
				return nil, NotesOutput{}, errors.New("text must not be empty")
			}
			user := req.Extra.TokenInfo.UserID
			nb.mu.Lock()
			nb.notes[user] = append(nb.notes[user], in.Text)
			out := NotesOutput{Notes: append([]string(nil), nb.notes[user]...)}
			nb.mu.Unlock()
			return nil, out, nil
		})
	mcp.AddTool(srv, &mcp.Tool{Name: "list_notes", Description: "Lists the signed-in user's notes."},
		func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, NotesOutput, error) {
			user := req.Extra.TokenInfo.UserID
			nb.mu.Lock()
			out := NotesOutput{Notes: append([]string{}, nb.notes[user]...)}
			nb.mu.Unlock()
			return nil, out, nil
		})

	verify := func(_ context.Context, token string, _ *http.Request) (*auth.TokenInfo, error) {
		at, ok := p.lookup(token)
		if !ok {
			return nil, auth.ErrInvalidToken
		}
		if at.resource != "" && strings.TrimSuffix(at.resource, "/") != strings.TrimSuffix(resourceURL, "/") {
			return nil, fmt.Errorf("%w: token is for another resource", auth.ErrInvalidToken)
		}
		return &auth.TokenInfo{UserID: at.user, Scopes: at.scopes, Expiration: at.expires}, nil
	}
	mcpHandler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{Logger: log})
	protected := auth.RequireBearerToken(verify, &auth.RequireBearerTokenOptions{ResourceMetadataURL: prmURL})(mcpHandler)

	mux := http.NewServeMux()
	mux.Handle(prmPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth.ProtectedResourceMetadataHandler(&oauthex.ProtectedResourceMetadata{
			Resource:               resourceURL,
			AuthorizationServers:   []string{p.Issuer()},
			ScopesSupported:        p.cfg.Scopes,
			BearerMethodsSupported: []string{"header"},
			ResourceName:           "mcpgate demo notes",
		}).ServeHTTP(w, r)
	}))
	mux.Handle("/", protected)
	return mux
}

func hasScope(ti *auth.TokenInfo, scope string) bool {
	if ti == nil {
		return false
	}
	for _, s := range ti.Scopes {
		if s == scope {
			return true
		}
	}
	return false
}
