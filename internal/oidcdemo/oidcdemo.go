// Package oidcdemo is the demo identity provider of `mcpgate dev` and the
// tests: a real OpenID Provider, zitadel/oidc's certified op package over
// its in-memory example storage, with two demo people in different groups
// and a plain login form a scripted browser can fill in.
//
// People (password "demo" for both):
//
//	ada@demo.example  groups: release
//	bob@demo.example  groups: readers
//
// The ID token carries email, email_verified, name and the "groups" claim.
// The token endpoint also issues Identity Assertion JWT Authorization
// Grants (ID-JAGs) by RFC 8693 token exchange of such an ID token
// (idjag.go).
// Groups can be changed while it runs (SetGroups), so tests can remove
// someone from a group at the provider.
package oidcdemo

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// Password is every demo person's password.
const Password = "demo"

// Demo people.
const (
	Ada = "ada@demo.example"
	Bob = "bob@demo.example"
)

// Default groups of the demo people.
var defaultGroups = map[string][]string{Ada: {"release"}, Bob: {"readers"}}

// Client is a relying party registered at the provider.
type Client struct {
	ID           string
	Secret       string
	RedirectURIs []string
}

// Config configures a Provider.
type Config struct {
	// Addr to listen on; 127.0.0.1:0 when empty.
	Addr string
	// Clients registered at start.
	Clients []Client
	// Wrap, when set, wraps the provider's handler (tests tamper with
	// answers through it).
	Wrap func(http.Handler) http.Handler
	Log  *slog.Logger
}

// Provider is a running demo identity provider.
type Provider struct {
	issuer string
	st     *groupStorage
	srv    *http.Server
	ln     net.Listener
	done   chan struct{}
}

// Start listens and serves the provider until Close.
func Start(cfg Config) (*Provider, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("oidcdemo: listen: %w", err)
	}
	issuer := "http://" + ln.Addr().String()
	h, st, err := newHandler(issuer, cfg.Clients, cfg.Log)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	var handler http.Handler = h
	if cfg.Wrap != nil {
		handler = cfg.Wrap(handler)
	}
	p := &Provider{issuer: issuer, st: st, ln: ln, done: make(chan struct{}),
		srv: &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(cfg.Log.Handler(), slog.LevelDebug)}}
	go func() {
		defer close(p.done)
		if err := p.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.Log.Error("oidcdemo: serve", "err", err)
		}
	}()
	return p, nil
}

// Issuer is the provider's issuer URL (http on loopback).
func (p *Provider) Issuer() string { return p.issuer }

// Close stops the provider.
func (p *Provider) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := p.srv.Shutdown(ctx)
	<-p.done
	return err
}

// SetGroups replaces the groups of a demo person (at the provider: the
// next sign-in or refresh asserts them).
func (p *Provider) SetGroups(user string, groups []string) {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	p.st.groups[user] = slices.Clone(groups)
}

// AddClient registers a relying party.
func (p *Provider) AddClient(c Client) {
	p.st.addClient(c)
}

// SigningKey is the provider's current signing key (tests forge tokens
// with it to check that a relying party verifies every other claim).
func (p *Provider) SigningKey(ctx context.Context) (op.SigningKey, error) {
	return p.st.SigningKey(ctx)
}

// users is the demo user store.
type users struct{ byName map[string]*storage.User }

func (u users) GetUserByID(id string) *storage.User {
	for _, x := range u.byName {
		if x.ID == id {
			return x
		}
	}
	return nil
}
func (u users) GetUserByUsername(name string) *storage.User { return u.byName[strings.ToLower(name)] }
func (u users) ExampleClientID() string                     { return "" }

func demoUsers() users {
	mk := func(id, email, first string) *storage.User {
		return &storage.User{ID: id, Username: email, Password: Password, FirstName: first, LastName: "Demo",
			Email: email, EmailVerified: true, PreferredLanguage: language.English}
	}
	return users{byName: map[string]*storage.User{
		Ada: mk("demo-ada", Ada, "Ada"),
		Bob: mk("demo-bob", Bob, "Bob"),
	}}
}

// groupStorage is the example storage plus a groups claim, ID tokens that
// carry the userinfo claims, and clients registered at run time.
type groupStorage struct {
	*storage.Storage
	users users

	mu      sync.Mutex
	groups  map[string][]string
	clients map[string]*storage.Client
	secrets map[string]string
}

func (s *groupStorage) addClient(c Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[c.ID] = storage.WebClient(c.ID, c.Secret, c.RedirectURIs...)
	s.secrets[c.ID] = c.Secret
}

func (s *groupStorage) groupsOf(userID string) []string {
	u := s.users.GetUserByID(userID)
	if u == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.groups[u.Username])
}

// GetClientByClientID serves the clients added at run time, asserting the
// userinfo claims in the ID token (as Okta and Entra ID do for the
// requested scopes).
func (s *groupStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	s.mu.Lock()
	c, ok := s.clients[id]
	s.mu.Unlock()
	if !ok {
		return nil, errors.New("client not found")
	}
	return idTokenClaims{c}, nil
}

// AuthorizeClientIDSecret checks the secrets of run-time clients.
func (s *groupStorage) AuthorizeClientIDSecret(ctx context.Context, id, secret string) error {
	s.mu.Lock()
	want, ok := s.secrets[id]
	s.mu.Unlock()
	if !ok || subtle.ConstantTimeCompare([]byte(want), []byte(secret)) != 1 {
		return errors.New("invalid client")
	}
	return nil
}

// SetUserinfoFromRequest adds the groups claim to ID tokens.
func (s *groupStorage) SetUserinfoFromRequest(ctx context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, ui, req, scopes); err != nil {
		return err
	}
	if slices.Contains(scopes, "groups") {
		ui.AppendClaims("groups", s.groupsOf(req.GetSubject()))
	}
	return nil
}

// SetUserinfoFromScopes adds the groups claim to the userinfo answer.
func (s *groupStorage) SetUserinfoFromScopes(ctx context.Context, ui *oidc.UserInfo, userID, clientID string, scopes []string) error {
	if err := s.Storage.SetUserinfoFromScopes(ctx, ui, userID, clientID, scopes); err != nil {
		return err
	}
	if slices.Contains(scopes, "groups") {
		ui.AppendClaims("groups", s.groupsOf(userID))
	}
	return nil
}

type idTokenClaims struct{ *storage.Client }

func (idTokenClaims) IDTokenUserinfoClaimsAssertion() bool { return true }
func (idTokenClaims) LoginURL(id string) string            { return "/login?authRequestID=" + id }
func (idTokenClaims) IsScopeAllowed(scope string) bool     { return scope == "groups" }

// newHandler builds the OpenID Provider and its login page.
func newHandler(issuer string, clients []Client, log *slog.Logger) (http.Handler, *groupStorage, error) {
	u := demoUsers()
	st := &groupStorage{
		Storage: storage.NewStorageWithClients(u, map[string]*storage.Client{}),
		users:   u,
		groups:  map[string][]string{},
		clients: map[string]*storage.Client{},
		secrets: map[string]string{},
	}
	for k, v := range defaultGroups {
		st.groups[k] = slices.Clone(v)
	}
	for _, c := range clients {
		st.addClient(c)
	}
	key := sha256.Sum256([]byte("mcpgate demo idp " + issuer))
	provider, err := op.NewProvider(&op.Config{
		CryptoKey:                key,
		DefaultLogoutRedirectURI: "/",
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		GrantTypeRefreshToken:    true,
		SupportedUILocales:       []language.Tag{language.English},
	}, st, op.StaticIssuer(issuer), op.WithAllowInsecure(), op.WithLogger(log))
	if err != nil {
		return nil, nil, fmt.Errorf("oidcdemo: %w", err)
	}
	callback := op.AuthCallbackURL(provider)
	mux := http.NewServeMux()
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		switch r.Method {
		case http.MethodGet:
			_ = loginPage.Execute(w, loginData{ID: r.URL.Query().Get("authRequestID")})
		case http.MethodPost:
			if err := r.ParseForm(); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			id := r.PostForm.Get("id")
			if err := st.CheckUsernamePassword(strings.ToLower(r.PostForm.Get("username")), r.PostForm.Get("password"), id); err != nil {
				w.WriteHeader(http.StatusForbidden)
				_ = loginPage.Execute(w, loginData{ID: id, Error: "Wrong email or password."})
				return
			}
			http.Redirect(w, r, callback(op.ContextWithIssuer(r.Context(), issuer), id), http.StatusFound)
		default:
			w.Header().Set("Allow", "GET, POST")
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	})
	jag := &idjagIssuer{issuer: issuer, provider: provider, st: st, log: log, now: time.Now}
	mux.HandleFunc("POST "+provider.TokenEndpoint().Relative(), jag.tokenEndpoint)
	mux.Handle("/", provider)
	return mux, st, nil
}

type loginData struct {
	ID    string
	Error string
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Demo IdP · sign in</title></head>
<body>
<h1>Demo IdP</h1>
<p>Demo people: <code>ada@demo.example</code> (group release) and <code>bob@demo.example</code> (group readers); password <code>demo</code>.</p>
{{if .Error}}<p id="error">{{.Error}}</p>{{end}}
<form method="post" action="/login" id="login">
<input type="hidden" name="id" value="{{.ID}}">
<p><label for="username">Email</label><br><input id="username" name="username" type="text" autocomplete="username"></p>
<p><label for="password">Password</label><br><input id="password" name="password" type="password" autocomplete="current-password"></p>
<p><button type="submit">Sign in</button></p>
</form>
</body></html>
`))
