package stacktest

import (
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/auth"
)

// Browser is a scripted browser for the authorization flow: it follows
// redirects itself (cookie jar, no automatic redirects) and submits each
// page's form — the gateway sign-in (pasting Key), the gateway consent
// (approve, CSRF token from the page) and the demo provider's consent
// (approve as User) — until it is redirected to the client's redirect URI.
type Browser struct {
	Key  string
	User string
	// IdP, when set, is the display name of the identity provider to sign
	// in with ("Sign in with <IdP>" on the gateway's sign-in page) instead
	// of pasting Key; IdPUser and IdPPassword fill in the provider's login
	// form (internal/oidcdemo's: username and password).
	IdP         string
	IdPUser     string
	IdPPassword string
	// Pages holds every HTML page shown, in order.
	Pages  []Page
	client *http.Client
}

// Page is one HTML page the browser was shown.
type Page struct {
	URL  string
	Body string
}

// NewBrowser returns a browser that signs in with the gateway key and
// approves at the upstream as user.
func NewBrowser(key, user string) *Browser {
	jar, _ := cookiejar.New(nil)
	return &Browser{Key: key, User: user, client: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Fetcher adapts the browser to the Go SDK's AuthorizationCodeFetcher,
// stopping at redirectURI.
func (b *Browser) Fetcher(redirectURI string) auth.AuthorizationCodeFetcher {
	return func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
		u, err := b.Authorize(ctx, args.URL, redirectURI)
		if err != nil {
			return nil, err
		}
		q := u.Query()
		if e := q.Get("error"); e != "" {
			return nil, fmt.Errorf("authorization error %s: %s", e, q.Get("error_description"))
		}
		return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
	}
}

var (
	formRE   = regexp.MustCompile(`(?is)<form[^>]*method="post"[^>]*action="([^"]*)"[^>]*>(.*?)</form>`)
	hiddenRE = regexp.MustCompile(`(?i)<input type="hidden" name="([^"]+)" value="([^"]*)"`)
	// idpLinkRE is a provider button of the gateway's sign-in page.
	idpLinkRE = regexp.MustCompile(`<a class="idp" href="([^"]*)">Sign in with ([^<]*)</a>`)
)

// Authorize opens authURL and walks the flow until a redirect to a URL
// starting with redirectURI, which it returns.
func (b *Browser) Authorize(ctx context.Context, authURL, redirectURI string) (*url.URL, error) {
	method, target, form := http.MethodGet, authURL, url.Values(nil)
	for range 20 {
		if method == http.MethodGet && strings.HasPrefix(target, redirectURI) {
			return url.Parse(target)
		}
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequestWithContext(ctx, method, target, body)
		if err != nil {
			return nil, err
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := b.client.Do(req)
		if err != nil {
			return nil, err
		}
		page, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		_ = resp.Body.Close()
		base := resp.Request.URL
		switch {
		case resp.StatusCode >= 300 && resp.StatusCode < 400:
			loc, err := base.Parse(resp.Header.Get("Location"))
			if err != nil {
				return nil, fmt.Errorf("bad Location from %s: %w", target, err)
			}
			method, target, form = http.MethodGet, loc.String(), nil
			continue
		case resp.StatusCode != http.StatusOK:
			return nil, fmt.Errorf("%s %s: status %d: %s", method, target, resp.StatusCode, page)
		}
		b.Pages = append(b.Pages, Page{URL: target, Body: string(page)})
		if b.IdP != "" {
			if l := idpLinkRE.FindAllStringSubmatch(string(page), -1); l != nil {
				found := false
				for _, m := range l {
					if html.UnescapeString(m[2]) == b.IdP {
						to, err := base.Parse(html.UnescapeString(m[1]))
						if err != nil {
							return nil, err
						}
						method, target, form, found = http.MethodGet, to.String(), nil, true
						break
					}
				}
				if found {
					continue
				}
				return nil, fmt.Errorf("%s: no \"Sign in with %s\" button", target, b.IdP)
			}
		}
		m := formRE.FindStringSubmatch(string(page))
		if m == nil {
			return nil, fmt.Errorf("%s: no form on page: %s", target, page)
		}
		action, err := base.Parse(html.UnescapeString(m[1]))
		if err != nil {
			return nil, err
		}
		form = url.Values{}
		for _, h := range hiddenRE.FindAllStringSubmatch(m[2], -1) {
			form.Set(h[1], html.UnescapeString(h[2]))
		}
		switch inner := m[2]; {
		case strings.Contains(inner, `name="username"`):
			form.Set("username", b.IdPUser)
			form.Set("password", b.IdPPassword)
		case strings.Contains(inner, `name="key"`):
			form.Set("key", b.Key)
		case strings.Contains(inner, `name="user"`):
			form.Set("user", b.User)
			form.Set("action", "approve")
		default:
			form.Set("action", "approve")
		}
		method, target = http.MethodPost, action.String()
	}
	return nil, fmt.Errorf("authorization flow did not reach %s in 20 steps", redirectURI)
}
