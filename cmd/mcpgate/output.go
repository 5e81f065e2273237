package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/cmd/mcpgate/config"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
)

// printer writes command results as tables or JSON. Secrets are never
// printed: server secrets show as "set".
type printer struct {
	w    io.Writer
	json bool
}

func (p *printer) message(m proto.Message) {
	// protojson's own spacing is deliberately unstable: indent it here.
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	var buf bytes.Buffer
	if err == nil {
		err = json.Indent(&buf, b, "", "  ")
	}
	if err != nil {
		fmt.Fprintf(p.w, "{\"error\": %q}\n", err.Error())
		return
	}
	fmt.Fprintln(p.w, buf.String())
}

func (p *printer) table(header string, rows [][]string) {
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
}

func (p *printer) done(format string, args ...any) {
	if p.json {
		return
	}
	fmt.Fprintf(p.w, format+"\n", args...)
}

// redact drops any secret value a server might carry, keeping the flags.
func redact(s *configv1.McpServer) *configv1.McpServer {
	s = proto.CloneOf(s)
	if s.GetAuthValue() != "" {
		s.AuthValue, s.AuthValueSet = "", true
	}
	if s.GetClientSecret() != "" {
		s.ClientSecret, s.ClientSecretSet = "", true
	}
	for k := range s.GetStaticHeaders() {
		if !slices.Contains(s.StaticHeaderNames, k) {
			s.StaticHeaderNames = append(s.StaticHeaderNames, k)
		}
	}
	s.StaticHeaders = nil
	return s
}

func lower(enum fmt.Stringer, prefix string) string {
	s := strings.TrimPrefix(enum.String(), prefix)
	if s == "UNSPECIFIED" {
		return "-"
	}
	return strings.ToLower(s)
}

func secrets(s *configv1.McpServer) string {
	var out []string
	if s.GetAuthValueSet() {
		out = append(out, "auth_value=set")
	}
	if s.GetClientSecretSet() {
		out = append(out, "client_secret=set")
	}
	for _, h := range s.GetStaticHeaderNames() {
		out = append(out, h+"=set")
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, ",")
}

func list(v []string) string {
	if len(v) == 0 {
		return "-"
	}
	return strings.Join(v, ",")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func ts(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().UTC().Format(time.RFC3339)
}

func (p *printer) servers(ss []*configv1.McpServer) {
	if p.json {
		out := &configv1.ListServersResponse{}
		for _, s := range ss {
			out.Servers = append(out.Servers, redact(s))
		}
		p.message(out)
		return
	}
	var rows [][]string
	for _, s := range ss {
		s = redact(s)
		auth := lower(s.GetAuthType(), "AUTH_TYPE_")
		if s.GetAuthType() == configv1.AuthType_AUTH_TYPE_OAUTH2 {
			auth += "/" + lower(s.GetOauth2Flow(), "O_AUTH2_FLOW_")
		}
		rows = append(rows, []string{s.GetName(), s.GetUrl(), lower(s.GetTransport(), "TRANSPORT_"), auth, secrets(s)})
	}
	p.table("NAME\tURL\tTRANSPORT\tAUTH\tSECRETS", rows)
}

func (p *printer) server(s *configv1.McpServer) {
	s = redact(s)
	if p.json {
		p.message(s)
		return
	}
	auth := lower(s.GetAuthType(), "AUTH_TYPE_")
	rows := [][]string{
		{"url", s.GetUrl()},
		{"transport", lower(s.GetTransport(), "TRANSPORT_")},
		{"auth_type", auth},
	}
	if s.GetAuthType() == configv1.AuthType_AUTH_TYPE_OAUTH2 {
		rows = append(rows,
			[]string{"oauth2_flow", lower(s.GetOauth2Flow(), "O_AUTH2_FLOW_")},
			[]string{"client_id", orDash(s.GetClientId())},
			[]string{"authorization_url", orDash(s.GetAuthorizationUrl())},
			[]string{"token_url", orDash(s.GetTokenUrl())},
			[]string{"revocation_url", orDash(s.GetRevocationUrl())},
			[]string{"issuer", orDash(s.GetIssuer())},
			[]string{"scopes", list(s.GetScopes())})
	}
	rows = append(rows,
		[]string{"secrets", secrets(s)},
		[]string{"allowed_tools", list(s.GetAllowedTools())},
		[]string{"disallowed_tools", list(s.GetDisallowedTools())},
		[]string{"description", orDash(s.GetDescription())},
		[]string{"revision", fmt.Sprint(s.GetRevision())})
	p.table("NAME\t"+s.GetName(), rows)
}

func (p *printer) principals(ps []*configv1.Principal) {
	if p.json {
		p.message(&configv1.ListPrincipalsResponse{Principals: ps})
		return
	}
	var rows [][]string
	for _, x := range ps {
		rows = append(rows, []string{x.GetName(), lower(x.GetKind(), "PRINCIPAL_KIND_"), lower(x.GetRole(), "ROLE_"), list(x.GetServers())})
	}
	p.table("NAME\tKIND\tROLE\tSERVERS", rows)
}

// principal prints a principal and, in a table, where each of its grants
// comes from: its own servers, or a group an admin made it a member of, or
// one an identity provider asserted (and when). JSON prints the principal
// with its effective servers (the GetPrincipal response).
func (p *printer) principal(x *configv1.Principal, eff []*configv1.EffectiveServer) {
	if p.json {
		p.message(&configv1.GetPrincipalResponse{Principal: x, EffectiveServers: eff})
		return
	}
	var asserted []string
	for _, a := range x.GetAssertedGroups() {
		asserted = append(asserted, fmt.Sprintf("%s (%s, %s)", a.GetGroup(), a.GetIdentityProvider(), ts(a.GetAssertTime())))
	}
	rows := [][]string{
		{"kind", lower(x.GetKind(), "PRINCIPAL_KIND_")},
		{"role", lower(x.GetRole(), "ROLE_")},
		{"servers", list(x.GetServers())},
		{"groups", list(x.GetGroups())},
		{"asserted_groups", list(asserted)},
		{"display_name", orDash(x.GetDisplayName())},
		{"revision", fmt.Sprint(x.GetRevision())},
	}
	for _, e := range eff {
		var from []string
		for _, s := range e.GetSources() {
			switch {
			case s.GetGroup() == "":
				from = append(from, "own")
			case s.GetIdentityProvider() == "":
				from = append(from, "group "+s.GetGroup()+" (admin)")
			default:
				from = append(from, fmt.Sprintf("group %s (idp %s, asserted %s)", s.GetGroup(), s.GetIdentityProvider(), ts(s.GetAssertTime())))
			}
		}
		rows = append(rows, []string{"grant " + e.GetServer(), strings.Join(from, "; ")})
	}
	p.table("NAME\t"+x.GetName(), rows)
}

func (p *printer) groups(gs []*configv1.Group) {
	if p.json {
		p.message(&configv1.ListGroupsResponse{Groups: gs})
		return
	}
	var rows [][]string
	for _, g := range gs {
		rows = append(rows, []string{g.GetName(), list(g.GetServers()), orDash(g.GetDescription())})
	}
	p.table("NAME\tSERVERS\tDESCRIPTION", rows)
}

func (p *printer) group(res *configv1.GetGroupResponse) {
	if p.json {
		p.message(res)
		return
	}
	g := res.GetGroup()
	p.table("NAME\t"+g.GetName(), [][]string{
		{"servers", list(g.GetServers())},
		{"description", orDash(g.GetDescription())},
		{"members", list(res.GetMembers())},
		{"revision", fmt.Sprint(g.GetRevision())},
	})
}

func keyStatus(k *configv1.ApiKey, now time.Time) string {
	switch {
	case k.GetRevoked():
		return "revoked"
	case k.GetExpireTime() != nil && !k.GetExpireTime().AsTime().After(now):
		return "expired"
	default:
		return "active"
	}
}

func (p *printer) virtualServers(vs []*configv1.VirtualServer) {
	if p.json {
		p.message(&configv1.ListVirtualServersResponse{VirtualServers: vs})
		return
	}
	var rows [][]string
	for _, v := range vs {
		rows = append(rows, []string{v.GetName(), list(memberNames(v)), orDash(v.GetDescription())})
	}
	p.table("NAME\tMEMBERS\tDESCRIPTION", rows)
}

func (p *printer) virtualServer(v *configv1.VirtualServer) {
	if p.json {
		p.message(&configv1.GetVirtualServerResponse{VirtualServer: v})
		return
	}
	rows := [][]string{
		{"route", "/" + v.GetName() + "/mcp"},
		{"description", orDash(v.GetDescription())},
		{"scopes", list(v.GetScopes())},
	}
	for _, m := range v.GetMembers() {
		detail := "prefix " + strconv.Quote(authorize.MemberPrefix(v, m))
		if len(m.GetIncludeTools()) > 0 {
			detail += "; include " + list(m.GetIncludeTools())
		}
		if len(m.GetExcludeTools()) > 0 {
			detail += "; exclude " + list(m.GetExcludeTools())
		}
		if len(m.GetRenames()) > 0 {
			var rs []string
			for _, up := range slices.Sorted(maps.Keys(m.GetRenames())) {
				rs = append(rs, up+"->"+m.GetRenames()[up])
			}
			detail += "; renames " + strings.Join(rs, ",")
		}
		rows = append(rows, []string{"member " + m.GetServer(), detail})
	}
	rows = append(rows, []string{"revision", fmt.Sprint(v.GetRevision())})
	p.table("NAME\t"+v.GetName(), rows)
}

func memberNames(v *configv1.VirtualServer) []string {
	out := make([]string, 0, len(v.GetMembers()))
	for _, m := range v.GetMembers() {
		out = append(out, m.GetServer())
	}
	return out
}

func (p *printer) keys(ks []*configv1.ApiKey) {
	if p.json {
		p.message(&configv1.ListKeysResponse{Keys: ks})
		return
	}
	now := time.Now()
	var rows [][]string
	for _, k := range ks {
		rows = append(rows, []string{k.GetId(), orDash(k.GetName()), k.GetPrincipal(), k.GetDisplayPrefix() + "…",
			ts(k.GetCreateTime()), ts(k.GetExpireTime()), keyStatus(k, now)})
	}
	p.table("ID\tNAME\tPRINCIPAL\tPREFIX\tCREATED\tEXPIRES\tSTATUS", rows)
}

func (p *printer) createdKey(res *configv1.CreateKeyResponse) {
	if p.json {
		p.message(res)
		return
	}
	k := res.GetApiKey()
	fmt.Fprintf(p.w, "created key %s for principal %s (expires %s)\n", k.GetId(), k.GetPrincipal(), ts(k.GetExpireTime()))
	fmt.Fprintf(p.w, "key: %s\n", res.GetKey())
	fmt.Fprintln(p.w, "This is the only time the key is shown. Send it as X-MCPGate-API-Key or Authorization: Bearer.")
}

func (p *printer) connections(cs []*vaultv1.Connection) {
	if p.json {
		p.message(&vaultv1.ListConnectionsResponse{Connections: cs})
		return
	}
	var rows [][]string
	for _, c := range cs {
		refresh := "no"
		if c.GetHasRefreshToken() {
			refresh = "yes"
		}
		rows = append(rows, []string{c.GetPrincipal(), c.GetServer(), lower(c.GetState(), "CONNECTION_STATE_"),
			list(c.GetScopes()), ts(c.GetAccessTokenExpireTime()), refresh, ts(c.GetUpdateTime())})
	}
	p.table("PRINCIPAL\tSERVER\tSTATE\tSCOPES\tTOKEN EXPIRES\tREFRESH\tUPDATED", rows)
}

func (p *printer) applyResults(rs []config.Result) {
	if p.json {
		type row struct {
			Kind    string `json:"kind"`
			Name    string `json:"name"`
			Outcome string `json:"outcome"`
			Key     string `json:"key,omitempty"`
		}
		rows := []row{}
		for _, r := range rs {
			rows = append(rows, row{r.Kind, r.Name, r.Outcome.String(), r.Key})
		}
		b, _ := json.MarshalIndent(rows, "", "  ")
		fmt.Fprintln(p.w, string(b))
		return
	}
	counts := map[config.Outcome]int{}
	for _, r := range rs {
		counts[r.Outcome]++
		fmt.Fprintf(p.w, "%s %s: %s\n", r.Kind, r.Name, r.Outcome)
		if r.Key != "" {
			fmt.Fprintf(p.w, "  key: %s (shown once)\n", r.Key)
		}
	}
	fmt.Fprintf(p.w, "%d created, %d changed, %d unchanged\n", counts[config.Created], counts[config.Changed], counts[config.Unchanged])
}
