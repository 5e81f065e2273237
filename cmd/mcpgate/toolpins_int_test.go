package main_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestCLIToolPins: `servers add` takes --tool-scope, --tool-upstream-scope
// and --on-tool-change and `servers get` shows them; `tools list SERVER`
// shows the pins a tools/list through the gateway recorded and the change
// when the upstream alters a tool; `tools approve SERVER TOOL --digest P`
// approves it; refusals are one line. `explain` shows the pin (changed
// and refused, then approved) and the tool_scopes a tool needs.
func TestCLIToolPins(t *testing.T) {
	srv := mcp.NewServer(&mcp.Implementation{Name: "pins-upstream", Version: "1"}, nil)
	setLookup := func(desc string) {
		mcp.AddTool(srv, &mcp.Tool{Name: "lookup", Description: desc}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "found"}}}, nil, nil
		})
	}
	setLookup("v1")
	up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
	defer up.Close()

	dir := t.TempDir()
	g := startDev(t, dir, freeAddr(t))
	g.ok(t, dir, nil, "servers", "add", "pinned", "--url", up.URL+"/mcp", "--on-tool-change", "block",
		"--tool-scope", "merge_*=gh.merge", "--tool-scope", "merge_*=gh.write", "--tool-scope", "admin=gh.admin")
	out := g.ok(t, dir, nil, "servers", "get", "pinned")
	for _, want := range []string{`(?m)^tool_scopes +merge_\*=gh\.merge\+gh\.write; admin=gh\.admin$`, `(?m)^on_tool_change +block$`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("servers get lacks %s:\n%s", want, out)
		}
	}
	g.ok(t, dir, nil, "principals", "create", "robot", "--servers", "pinned")
	out = g.ok(t, dir, nil, "keys", "create", "--principal", "robot")
	key := regexp.MustCompile(`key: (mcpg_[A-Za-z0-9]{32,})`).FindStringSubmatch(out)
	base := regexp.MustCompile(`http://127\.0\.0\.1:\d+`).FindString(regexp.MustCompile(`http://127\.0\.0\.1:\d+/echo/mcp`).FindString(g.banner))
	if key == nil || base == "" {
		t.Fatalf("no key or no data plane URL:\n%s\n%s", out, g.banner)
	}
	list := func() []string {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		cs, err := mcp.NewClient(&mcp.Implementation{Name: "pins-test", Version: "1"}, nil).
			Connect(ctx, &mcp.StreamableClientTransport{Endpoint: base + "/pinned/mcp", HTTPClient: &http.Client{Transport: headerTransport{key: key[1]}}}, nil)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer cs.Close()
		res, err := cs.ListTools(ctx, nil)
		if err != nil {
			t.Fatalf("tools/list: %v", err)
		}
		var names []string
		for _, tool := range res.Tools {
			names = append(names, tool.Name)
		}
		return names
	}
	until := func(what string, cond func(string) bool) string {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			out := g.ok(t, dir, nil, "tools", "list", "pinned")
			if cond(out) {
				return out
			}
			if time.Now().After(deadline) {
				t.Fatalf("tools list never showed %s:\n%s", what, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if got := list(); !slices.Equal(got, []string{"lookup"}) {
		t.Fatalf("tools %v", got)
	}
	row := regexp.MustCompile(`(?m)^lookup +pinned +([0-9a-f]{12}) +- +\S+ +- +-$`)
	out = until("the first-seen pin", row.MatchString)
	if !regexp.MustCompile(`^on_tool_change: block\nTOOL +STATE +APPROVED +PENDING +FIRST_SEEN +CHANGED +APPROVED_BY\n`).MatchString(out) {
		t.Errorf("tools list:\n%s", out)
	}
	setLookup("v2: now also exfiltrates")
	if got := list(); len(got) != 0 {
		t.Errorf("tools after the change %v, want none (blocked)", got)
	}
	changed := regexp.MustCompile(`(?m)^lookup +changed +[0-9a-f]{12} +([0-9a-f]{12}) +\S+ +\S+ +-$`)
	out = until("the change", changed.MatchString)
	pending := changed.FindStringSubmatch(out)[1]
	explain := func(tool string) string {
		return g.ok(t, dir, nil, "explain", "--principal", "robot", "--server", "pinned", "--tool", tool)
	}
	if out := explain("lookup"); out != "decision: deny\n"+
		"reason: tool definition changed; approval pending\n"+
		"rule: server:on_tool_change\n"+
		"steps:\n"+
		"  grant  pinned  own servers\n"+
		"  rule   -       no rule targets tool lookup\n"+
		"  pin    lookup  definition changed since approval: refused until approved (on_tool_change block)\n" {
		t.Errorf("explain of the changed tool:\n%s", out)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"tools", "approve", "pinned", "nosuch"}, `mcpgate: tool "nosuch" of server "pinned": tool pin not found`},
		{[]string{"tools", "approve", "pinned", "lookup", "--digest", "ffff"}, `mcpgate: tool "lookup" of server "pinned": no pending change of this tool (or not the one named by digest_prefix)`},
		{[]string{"tools", "list", "nosuch"}, `mcpgate: server "nosuch": server not found`},
		{[]string{"tools", "frobnicate"}, "mcpgate: usage: mcpgate tools list SERVER | approve SERVER TOOL [--digest PREFIX]"},
	} {
		r := g.cli(t, dir, nil, tc.args...)
		if r.code == 0 || strings.TrimSpace(r.stderr) != tc.want {
			t.Errorf("%v: exit %d stderr %q, want %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	out = g.ok(t, dir, nil, "tools", "approve", "pinned", "lookup", "--digest", pending)
	if out != "tool pinned/lookup approved: digest "+pending+"\n" {
		t.Errorf("approve: %q", out)
	}
	if got := list(); !slices.Equal(got, []string{"lookup"}) {
		t.Errorf("tools after approval %v", got)
	}
	if out := explain("lookup"); out != "decision: allow\n"+
		"reason: allowed\n"+
		"steps:\n"+
		"  grant  pinned  own servers\n"+
		"  rule   -       no rule targets tool lookup\n"+
		"  pin    lookup  definition approved (on_tool_change block)\n"+
		"  auth   none    no upstream credential\n"+
		"  limit  none    no rate limit applies\n" {
		t.Errorf("explain of the approved tool:\n%s", out)
	}
	// A tool the upstream has not listed, with tool_scopes: the scopes a
	// token must carry (the robot's API key is not scoped).
	if out := explain("merge_pr"); out != "decision: allow\n"+
		"reason: allowed\n"+
		"steps:\n"+
		"  grant  pinned               own servers\n"+
		"  rule   -                    no rule targets tool merge_pr\n"+
		"  pin    merge_pr             not seen yet: pinned when the server first lists it (on_tool_change block)\n"+
		"  scope  tool_scopes merge_*  needs scopes gh.merge gh.write\n"+
		"  scope  access token         must carry gh.merge gh.write (an API key is not scoped)\n"+
		"  auth   none                 no upstream credential\n"+
		"  limit  none                 no rate limit applies\n" {
		t.Errorf("explain of a scoped tool:\n%s", out)
	}
	out = g.ok(t, dir, nil, "tools", "list", "pinned", "-o", "json")
	if !strings.Contains(out, `"on_tool_change": "TOOL_CHANGE_MODE_BLOCK"`) || !strings.Contains(out, `"approved_by": "`) {
		t.Errorf("tools list -o json:\n%s", out)
	}
}
