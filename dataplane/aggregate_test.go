package dataplane_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/pprof"

	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/protobuf/proto"

	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/dataplane"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
)

// aggDef is one member of a fake virtual server.
type aggDef struct {
	server           string
	prefix           string // "" = wire.DefaultToolPrefix(server)
	renames          map[string]string
	include, exclude []string
}

// authorizeAggregate decides for an aggregate route like the control plane
// (contract of issue 10): the root aggregate "" has every route the
// principal is granted as a member with the default prefix; f.virtuals
// names the others. Each member carries its own decision, computed by the
// fake's per-server rules; tools/call and prompts/get resolve the exposed
// name to its owner.
func (f *fakeCP) authorizeAggregate(ctx context.Context, req *authorizev1.AuthorizeRequest) (*authorizev1.AuthorizeResponse, bool) {
	f.mu.Lock()
	var defs []aggDef
	switch vs, ok := f.virtuals[req.GetRoute()]; {
	case req.GetRootAggregate() && req.GetRoute() == "":
		var names []string
		for n := range f.routes {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			defs = append(defs, aggDef{server: n})
		}
	case ok:
		defs = vs
	default:
		f.mu.Unlock()
		return nil, false
	}
	f.mu.Unlock()
	p := principalOf(req.GetCredentials())
	if p == "" {
		c := &authorizev1.Challenge{}
		if req.GetCredentials().GetApiKey() != "" || req.GetCredentials().GetBearerToken() != "" {
			c.Error, c.ErrorDescription = "invalid_token", "unknown credential"
		}
		return &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_CHALLENGE, Challenge: c}, true
	}
	agg := &authorizev1.Aggregate{Name: req.GetRoute()}
	for _, d := range defs {
		if req.GetMember() != "" && d.server != req.GetMember() {
			continue
		}
		f.mu.Lock()
		rt := f.routes[d.server]
		f.mu.Unlock()
		if rt == nil || !rt.principals[p] {
			continue // not granted: omitted
		}
		prefix := d.prefix
		if prefix == "" {
			prefix = wire.DefaultToolPrefix(d.server)
		}
		m := &authorizev1.AggregateMember{Server: d.server, ToolPrefix: prefix, Renames: d.renames, IncludeTools: d.include, ExcludeTools: d.exclude}
		sub := proto.CloneOf(req)
		sub.Route, sub.RootAggregate, sub.Member, sub.ToolName, sub.PromptName = d.server, false, "", "", ""
		switch req.GetJsonrpcMethod() {
		case "tools/call", "prompts/get":
			name := req.GetToolName()
			if req.GetJsonrpcMethod() == "prompts/get" {
				name = req.GetPromptName()
			}
			up, ok := wire.UpstreamName(prefix, d.renames, name)
			if !ok {
				continue
			}
			m.UpstreamName = up
			if req.GetJsonrpcMethod() == "tools/call" {
				sub.ToolName = up
			} else {
				sub.PromptName = up
			}
		}
		dec, err := f.Authorize(ctx, sub)
		if err != nil {
			return nil, false
		}
		if dec.GetDecision() == authorizev1.Decision_DECISION_CHALLENGE {
			dec.Challenge.ConnectUrl = req.GetPublicBaseUrl() + "/connect/" + d.server
		}
		m.Decision = dec
		agg.Members = append(agg.Members, m)
	}
	return &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_ALLOW, Principal: p, Aggregate: agg, KeyId: fakeKeyID(req.GetCredentials().GetApiKey())}, true
}

// swappable serves an MCP handler that a test can take down (connections
// closed) and bring back as a fresh server (all sessions gone), like a
// restarted process, and records the methods it sees.
type swappable struct {
	srv  *httptest.Server
	make func() http.Handler
	down atomic.Bool

	open  atomic.Int32 // GET streams being served
	mu    sync.Mutex
	h     http.Handler
	gets  int
	inits int // POSTs without a session: initialize
}

func newSwappable(t testing.TB, mk func() http.Handler) *swappable {
	s := &swappable{make: mk, h: mk()}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.down.Load() {
			if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
				c.Close()
			}
			return
		}
		s.mu.Lock()
		h := s.h
		if r.Method == http.MethodGet {
			s.gets++
		}
		if r.Method == http.MethodPost && r.Header.Get("Mcp-Session-Id") == "" {
			s.inits++
		}
		s.mu.Unlock()
		if r.Method == http.MethodGet {
			s.open.Add(1)
			defer s.open.Add(-1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *swappable) url() string { return s.srv.URL + "/mcp" }

func (s *swappable) restart() {
	s.mu.Lock()
	s.h = s.make()
	s.mu.Unlock()
	s.down.Store(false)
}

func (s *swappable) streamsOpen() int { return int(s.open.Load()) }

func (s *swappable) initCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inits
}

func (s *swappable) getCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets
}

type noteIn struct {
	Text string `json:"text"`
}

// newNotesServer is the OAuth (authorization_code) member: a tool, a
// prompt, a resource and instructions.
func newNotesServer() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "notes", Version: "1"}, &mcp.ServerOptions{
		Instructions: "Keeps notes.",
		// Echoes the reference it got, so a test sees what the member saw.
		CompletionHandler: func(_ context.Context, req *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
			r := req.Params.Ref
			return &mcp.CompleteResult{Completion: mcp.CompletionResultDetails{Values: []string{r.Type + ":" + r.Name + r.URI}}}, nil
		},
	})
	s.AddResourceTemplate(&mcp.ResourceTemplate{URITemplate: "note://{id}", Name: "note"}, func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: "templated"}}}, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "add", Description: "adds a note"}, func(_ context.Context, _ *mcp.CallToolRequest, in noteIn) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "noted: " + in.Text}}}, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "link", Description: "links a note"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{
			&mcp.ResourceLink{URI: "note://1", Name: "first"},
			&mcp.EmbeddedResource{Resource: &mcp.ResourceContents{URI: "note://2", Text: "second"}},
		}}, nil, nil
	})
	s.AddPrompt(&mcp.Prompt{Name: "summarize", Description: "summarize notes"}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: "summarize the notes"}}}}, nil
	})
	s.AddResource(&mcp.Resource{URI: "note://1", Name: "first", MIMEType: "text/plain"}, func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, MIMEType: "text/plain", Text: "first note"}}}, nil
	})
	return s
}

// eventsHooks tell a test what the events member's block tool went
// through.
type eventsHooks struct {
	started, cancelled chan struct{}
}

// newEventsServer is the member that sends progress, logging, an
// elicitation and list_changed. Its tools/list pages hold one tool each.
func newEventsServer(hooks *eventsHooks) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "events", Version: "1"}, &mcp.ServerOptions{Instructions: "Emits events.", PageSize: 1})
	mcp.AddTool(s, &mcp.Tool{Name: "work", Description: "progress, a log line, then asks"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		if tok := req.Params.GetProgressToken(); tok != nil {
			if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: tok, Progress: 1, Total: 2, Message: "half"}); err != nil {
				return nil, nil, err
			}
		}
		//lint:ignore SA1019 2025-11-25 logging notifications are what the aggregate must relay (issue 10)
		if err := req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: "info", Logger: "events", Data: "working"}); err != nil {
			return nil, nil, err
		}
		res, err := req.Session.Elicit(ctx, &mcp.ElicitParams{Message: "proceed?", RequestedSchema: map[string]any{
			"type": "object", "properties": map[string]any{"ok": map[string]any{"type": "boolean"}},
		}})
		if err != nil {
			return nil, nil, err
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf("answer: %s %v", res.Action, res.Content["ok"])}}}, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "sample", Description: "asks the client's model"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		//lint:ignore SA1019 2025-11-25 sampling requests are what the aggregate must relay (issue 10)
		res, err := req.Session.CreateMessage(ctx, &mcp.CreateMessageParams{MaxTokens: 10, Messages: []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: "2+2?"}}}})
		if err != nil {
			return nil, nil, err
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "model said " + res.Content.(*mcp.TextContent).Text}}}, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "block", Description: "waits for its cancellation"}, func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		hooks.started <- struct{}{}
		<-ctx.Done()
		hooks.cancelled <- struct{}{}
		return nil, nil, ctx.Err()
	})
	mcp.AddTool(s, &mcp.Tool{Name: "change", Description: "adds a tool"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		mcp.AddTool(s, &mcp.Tool{Name: "extra", Description: "added later"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "extra"}}}, nil, nil
		})
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "changed"}}}, nil, nil
	})
	return s
}

func sdkHandler(s *mcp.Server, jsonResponse bool) http.Handler {
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{JSONResponse: jsonResponse})
}

// aggWorld is a fake control plane with three members — echo (static
// auth), notes (authorization_code, alice not connected yet), events — and
// one gateway.
type aggWorld struct {
	cp     *fakeCP
	g      *gateway
	echo   *upstream
	notes  *swappable
	events *swappable
	hooks  *eventsHooks
	vault  map[string]bool
}

func newAggWorld(t *testing.T) *aggWorld {
	t.Helper()
	w := &aggWorld{cp: newFakeCP(t), vault: map[string]bool{}}
	alice := map[string]bool{"alice": true}
	w.echo = newUpstream(t, false)
	w.notes = newSwappable(t, func() http.Handler { return sdkHandler(newNotesServer(), true) })
	w.hooks = &eventsHooks{started: make(chan struct{}, 8), cancelled: make(chan struct{}, 8)}
	w.events = newSwappable(t, func() http.Handler { return sdkHandler(newEventsServer(w.hooks), false) })
	w.cp.setRoute("echo", &route{mode: "static", upstream: w.echo.url(), principals: alice})
	w.cp.setRoute("notes", &route{mode: "authcode", upstream: w.notes.url(), principals: alice, vault: w.vault})
	w.cp.setRoute("events", &route{mode: "none", upstream: w.events.url(), principals: alice})
	w.g = newGateway(t, w.cp, nil)
	return w
}

// connect sets alice's vault grant for notes.
func (w *aggWorld) connect() {
	w.cp.mu.Lock()
	w.vault["alice"] = true
	w.cp.mu.Unlock()
}

// aggClient connects the SDK client to path on g.
func aggClient(t *testing.T, g *gateway, path string, rt http.RoundTripper, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1.0.0"}, opts)
	tr := &mcp.StreamableClientTransport{Endpoint: g.srv.URL + path, HTTPClient: &http.Client{Transport: rt}, MaxRetries: -1}
	cs, err := c.Connect(t.Context(), tr, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatalf("connect %s: %v", path, err)
	}
	return cs
}

func allTools(t *testing.T, cs *mcp.ClientSession) []string {
	t.Helper()
	var out []string
	for tool, err := range cs.Tools(t.Context(), nil) {
		if err != nil {
			t.Fatalf("tools/list: %v", err)
		}
		out = append(out, tool.Name)
	}
	slices.Sort(out)
	return out
}

func text(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	if len(res.Content) == 0 {
		t.Fatalf("empty result")
	}
	tc, ok := res.Content[0].(*mcp.TextContent)
	if !ok {
		t.Fatalf("content %T", res.Content[0])
	}
	return tc.Text
}

// TestAggregateSDK runs the official Go SDK client against /mcp over three
// SDK members: merged lists and instructions, calls routed, progress,
// logging, an elicitation round trip and list_changed delivered, the
// unconnected member's call answered with the URL elicitation, and the same
// call working in the same session once the person connected.
func TestAggregateSDK(t *testing.T) {
	w := newAggWorld(t)
	var progress, logs atomic.Int32
	listChanged := make(chan struct{}, 4)
	var elicited atomic.Value
	kt := &keyTransport{header: "X-MCPGate-API-Key", value: "mcpg_alice"}
	cs := aggClient(t, w.g, "/mcp", kt, &mcp.ClientOptions{
		Capabilities: &mcp.ClientCapabilities{Elicitation: &mcp.ElicitationCapabilities{Form: &mcp.FormElicitationCapabilities{}, URL: &mcp.URLElicitationCapabilities{}}},
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			if req.Params.Message == "half" && req.Params.ProgressToken == "tok-1" {
				progress.Add(1)
			}
		},
		//lint:ignore SA1019 2025-11-25 logging notifications are what the aggregate must relay (issue 10)
		LoggingMessageHandler: func(_ context.Context, req *mcp.LoggingMessageRequest) {
			if req.Params.Data == "working" {
				logs.Add(1)
			}
		},
		ElicitationHandler: func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			elicited.Store(req.Params.Message)
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"ok": true}}, nil
		},
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
			select {
			case listChanged <- struct{}{}:
			default:
			}
		},
		//lint:ignore SA1019 2025-11-25 sampling requests are what the aggregate must relay (issue 10)
		CreateMessageHandler: func(_ context.Context, req *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			//lint:ignore SA1019 2025-11-25 sampling requests are what the aggregate must relay (issue 10)
			return &mcp.CreateMessageResult{Model: "m", Role: "assistant", Content: &mcp.TextContent{Text: "4"}}, nil
		},
	})
	defer cs.Close()

	init := cs.InitializeResult()
	if !strings.Contains(init.Instructions, "## events\nEmits events.") || strings.Contains(init.Instructions, "notes") {
		t.Errorf("instructions %q: want events' (notes is not connected)", init.Instructions)
	}
	if init.Capabilities.Tools == nil || !init.Capabilities.Tools.ListChanged {
		t.Errorf("capabilities %+v", init.Capabilities)
	}

	// Merged across pages: events pages one tool at a time.
	want := []string{"echo__echo", "echo__secret", "echo__slow", "events__block", "events__change", "events__sample", "events__work"}
	if got := allTools(t, cs); !slices.Equal(got, want) {
		t.Errorf("tools %v, want %v (notes omitted until connected)", got, want)
	}
	first, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if first.NextCursor == "" || len(first.Tools) != 4 {
		t.Errorf("first page: %d tools, cursor %q: want echo's 3 + events' first, and a cursor", len(first.Tools), first.NextCursor)
	}

	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo__echo", Arguments: map[string]any{"text": "hi"}})
	if err != nil || text(t, res) != "echo: hi" {
		t.Fatalf("echo__echo: %v %v", res, err)
	}
	// Policy still applies, on the upstream name.
	var rpcErr *jsonrpc.Error
	if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo__secret", Arguments: map[string]any{}}); !errors.As(err, &rpcErr) || rpcErr.Code != -32602 || rpcErr.Message != "Not allowed" {
		t.Errorf("echo__secret: %v, want -32602 Not allowed", err)
	}
	if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "nobody__x", Arguments: map[string]any{}}); !errors.As(err, &rpcErr) || rpcErr.Code != -32602 {
		t.Errorf("unknown tool: %v", err)
	}

	//lint:ignore SA1019 2025-11-25 logging notifications are what the aggregate must relay (issue 10)
	if err := cs.SetLoggingLevel(t.Context(), &mcp.SetLoggingLevelParams{Level: "info"}); err != nil {
		t.Fatalf("logging/setLevel: %v", err)
	}
	params := &mcp.CallToolParams{Name: "events__work", Arguments: map[string]any{}}
	params.SetProgressToken("tok-1")
	res, err = cs.CallTool(t.Context(), params)
	if err != nil {
		t.Fatalf("events__work: %v", err)
	}
	if got := text(t, res); got != "answer: accept true" {
		t.Errorf("events__work %q", got)
	}
	if elicited.Load() != "proceed?" || progress.Load() != 1 || logs.Load() != 1 {
		t.Errorf("elicited %v, progress %d, logs %d", elicited.Load(), progress.Load(), logs.Load())
	}
	// Sampling: the member's request reaches the client, the answer the
	// member.
	res, err = cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "events__sample", Arguments: map[string]any{}})
	if err != nil || text(t, res) != "model said 4" {
		t.Fatalf("events__sample: %v %v", res, err)
	}
	// The elicitation answer was authorized for its member only.
	answered := false
	w.cp.mu.Lock()
	for _, r := range w.cp.requests {
		if r.GetRootAggregate() && r.GetJsonrpcMethod() == "" && r.GetHttpMethod() == "POST" && r.GetMember() == "events" {
			answered = true
		}
	}
	w.cp.mu.Unlock()
	if !answered {
		t.Errorf("no Authorize for the elicitation answer restricted to member events")
	}

	// list_changed from the member's GET stream reaches the client's.
	deadline := time.Now().Add(10 * time.Second)
	for w.events.getCount() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "events__change", Arguments: map[string]any{}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-listChanged:
	case <-time.After(10 * time.Second):
		t.Fatalf("no tools/list_changed")
	}
	if got := allTools(t, cs); !slices.Contains(got, "events__extra") {
		t.Errorf("tools after change %v", got)
	}

	// The unconnected member: URL elicitation naming its connect page.
	_, err = cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "notes__add", Arguments: map[string]any{"text": "x"}})
	if !errors.As(err, &rpcErr) || rpcErr.Code != -32042 {
		t.Fatalf("notes__add before connecting: %v, want -32042", err)
	}
	connectURL := w.g.srv.URL + "/connect/notes"
	if !strings.Contains(string(rpcErr.Data), `"mode":"url"`) || !strings.Contains(string(rpcErr.Data), `"url":"`+connectURL+`"`) || !strings.Contains(string(rpcErr.Data), `"elicitationId":"`) {
		t.Errorf("error data %s", rpcErr.Data)
	}

	// The person connects; the same session now reaches notes.
	w.connect()
	res, err = cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "notes__add", Arguments: map[string]any{"text": "x"}})
	if err != nil || text(t, res) != "noted: x" {
		t.Fatalf("notes__add after connecting: %v %v", res, err)
	}
	if got := allTools(t, cs); !slices.Contains(got, "notes__add") {
		t.Errorf("tools after connecting %v", got)
	}
	prompts, err := cs.ListPrompts(t.Context(), nil)
	if err != nil || len(prompts.Prompts) != 1 || prompts.Prompts[0].Name != "notes__summarize" {
		t.Fatalf("prompts/list %v %v", prompts, err)
	}
	pr, err := cs.GetPrompt(t.Context(), &mcp.GetPromptParams{Name: "notes__summarize"})
	if err != nil || len(pr.Messages) != 1 {
		t.Fatalf("prompts/get %v %v", pr, err)
	}
	resources, err := cs.ListResources(t.Context(), nil)
	if err != nil || len(resources.Resources) != 1 || resources.Resources[0].URI != "mcpgate://notes/note://1" {
		t.Fatalf("resources/list %v %v", resources, err)
	}
	rr, err := cs.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: "mcpgate://notes/note://1"})
	if err != nil || len(rr.Contents) != 1 || rr.Contents[0].URI != "mcpgate://notes/note://1" || rr.Contents[0].Text != "first note" {
		t.Fatalf("resources/read %v %v", rr, err)
	}
	// Resource links in a tool result are exposed URIs the client can read.
	res, err = cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "notes__link", Arguments: map[string]any{}})
	if err != nil || len(res.Content) != 2 {
		t.Fatalf("notes__link %v %v", res, err)
	}
	if l, ok := res.Content[0].(*mcp.ResourceLink); !ok || l.URI != "mcpgate://notes/note://1" {
		t.Errorf("resource link %+v", res.Content[0])
	}
	if e, ok := res.Content[1].(*mcp.EmbeddedResource); !ok || e.Resource.URI != "mcpgate://notes/note://2" {
		t.Errorf("embedded resource %+v", res.Content[1])
	}

	// The client only ever saw sealed handles, the members never the key.
	for _, r := range w.echo.requests() {
		if r.header.Get("X-Mcpgate-Api-Key") != "" || r.header.Get("X-Api-Key") != "upstream-static-secret" {
			t.Errorf("echo saw headers %v", r.header)
		}
	}
	for _, r := range kt.responses() {
		if r.status >= 400 {
			t.Errorf("%s answered %d", r.method, r.status)
		}
	}
}

// TestAggregateURLElicitationFallback: a client without elicitation.url
// gets a tool error carrying the connect link.
func TestAggregateURLElicitationFallback(t *testing.T) {
	w := newAggWorld(t)
	kt := &keyTransport{header: "X-MCPGate-API-Key", value: "mcpg_alice"}
	cs := aggClient(t, w.g, "/mcp", kt, nil)
	defer cs.Close()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "notes__add", Arguments: map[string]any{"text": "x"}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.IsError || text(t, res) != "Connect your notes account to use this: "+w.g.srv.URL+"/connect/notes" {
		t.Errorf("result %v %q", res.IsError, text(t, res))
	}
}

// alternating sends each request to the next of several gateways.
type alternating struct {
	kt    *keyTransport
	hosts []string
	n     atomic.Int64
}

func (a *alternating) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	h := a.hosts[int(a.n.Add(1))%len(a.hosts)]
	r.URL.Host, r.Host = h, h
	return a.kt.RoundTrip(r)
}

// TestAggregateTwoDataPlanes alternates one aggregate session between two
// data planes for 200 calls: the handle carries everything.
func TestAggregateTwoDataPlanes(t *testing.T) {
	w := newAggWorld(t)
	g2 := newGateway(t, w.cp, nil)
	hosts := []string{}
	for _, g := range []*gateway{w.g, g2} {
		u, _ := url.Parse(g.srv.URL)
		hosts = append(hosts, u.Host)
	}
	kt := &keyTransport{header: "X-MCPGate-API-Key", value: "mcpg_alice"}
	c := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1.0.0"}, nil)
	cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: w.g.srv.URL + "/mcp", HTTPClient: &http.Client{Transport: &alternating{kt: kt, hosts: hosts}}, MaxRetries: -1, DisableStandaloneSSE: true}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	failures := 0
	for i := range 200 {
		name, want := "echo__echo", fmt.Sprintf("echo: %d", i)
		if i%2 == 1 {
			name, want = "events__change", "changed"
		}
		args := map[string]any{"text": fmt.Sprint(i)}
		if i%2 == 1 {
			args = map[string]any{}
		}
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: name, Arguments: args})
		if err != nil || res.IsError || text(t, res) != want {
			failures++
		}
	}
	if failures != 0 {
		t.Errorf("%d of 200 calls failed", failures)
	}
	// No member was reopened: both planes used the sealed member sessions.
	inits := 0
	for _, r := range w.echo.requests() {
		if strings.Contains(r.body, `"method":"initialize"`) {
			inits++
		}
	}
	if inits != 1 {
		t.Errorf("echo initialized %d times, want 1", inits)
	}
}

// TestAggregateMemberRestart: a member taken down fails only its own calls
// (with a JSON-RPC error naming it); when it comes back with no memory of
// the session, the gateway reopens it in the same client session.
func TestAggregateMemberRestart(t *testing.T) {
	w := newAggWorld(t)
	kt := &keyTransport{header: "X-MCPGate-API-Key", value: "mcpg_alice"}
	listChanged := make(chan struct{}, 8)
	cs := aggClient(t, w.g, "/mcp", kt, &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { listChanged <- struct{}{} },
	})
	defer cs.Close()
	call := func(name string) (string, error) {
		args := map[string]any{"text": "a"}
		if strings.HasPrefix(name, "events") {
			args = map[string]any{}
		}
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: name, Arguments: args})
		if err != nil {
			return "", err
		}
		return text(t, res), nil
	}
	if got, err := call("events__change"); err != nil || got != "changed" {
		t.Fatalf("before: %q %v", got, err)
	}
	w.events.down.Store(true)
	w.events.srv.CloseClientConnections()
	for deadline := time.Now().Add(20 * time.Second); w.events.streamsOpen() > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // the old GET stream's handler ends
	}
	var rpcErr *jsonrpc.Error
	if _, err := call("events__change"); !errors.As(err, &rpcErr) || rpcErr.Code != -32002 || !strings.Contains(rpcErr.Message, "events") {
		t.Errorf("call to the downed member: %v", err)
	}
	for range 5 {
		if got, err := call("echo__echo"); err != nil || got != "echo: a" {
			t.Errorf("other member while one is down: %q %v", got, err)
		}
	}
	tools := allTools(t, cs)
	if slices.Contains(tools, "events__work") || !slices.Contains(tools, "echo__echo") {
		t.Errorf("tools while events is down %v", tools)
	}
	w.events.restart()
	before := w.events.initCount()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if got, err := call("events__change"); err != nil || got != "changed" {
				t.Errorf("after restart: %q %v", got, err)
			}
		})
	}
	wg.Wait()
	if n := w.events.initCount() - before; n != 1 {
		t.Errorf("events reopened %d times by 8 concurrent calls, want once", n)
	}
	// The client's GET stream follows the member to its new session:
	// list_changed from the restarted member reaches it.
	for len(listChanged) > 0 {
		<-listChanged // from before the restart
	}
	deadline := time.Now().Add(20 * time.Second) // hang guard
	for w.events.streamsOpen() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got, err := call("events__change"); err != nil || got != "changed" {
		t.Fatalf("change: %q %v", got, err)
	}
	waitFor(t, listChanged, "tools/list_changed from the restarted member")
}

// TestAggregateCancel: the client's cancellation reaches the member
// serving the call.
func TestAggregateCancel(t *testing.T) {
	w := newAggWorld(t)
	kt := &keyTransport{header: "X-MCPGate-API-Key", value: "mcpg_alice"}
	cs := aggClient(t, w.g, "/mcp", kt, nil)
	defer cs.Close()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "events__block", Arguments: map[string]any{}})
		errc <- err
	}()
	waitFor(t, w.hooks.started, "the member's tool to start")
	cancel()
	waitFor(t, w.hooks.cancelled, "the member's tool to be cancelled")
	if err := <-errc; err == nil {
		t.Errorf("cancelled call succeeded")
	}
	// The session goes on.
	if res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo__echo", Arguments: map[string]any{"text": "z"}}); err != nil || text(t, res) != "echo: z" {
		t.Errorf("after cancel: %v %v", res, err)
	}
}

// TestAggregateInFlightMemberKilled: a member killed while a call to it is
// in flight costs that call only; calls to the other members in the same
// session go on, and the member is reopened when it is back.
func TestAggregateInFlightMemberKilled(t *testing.T) {
	w := newAggWorld(t)
	kt := &keyTransport{header: "X-MCPGate-API-Key", value: "mcpg_alice"}
	cs := aggClient(t, w.g, "/mcp", kt, nil)
	defer cs.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "events__block", Arguments: map[string]any{}})
		errc <- err
	}()
	waitFor(t, w.hooks.started, "the member's tool to start")
	w.events.down.Store(true)
	w.events.srv.CloseClientConnections()
	var rpcErr *jsonrpc.Error
	if err := <-errc; !errors.As(err, &rpcErr) || rpcErr.Code != -32002 || rpcErr.Message != "member server events unavailable" {
		t.Errorf("in-flight call: %v", err)
	}
	for i := range 20 {
		if res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo__echo", Arguments: map[string]any{"text": fmt.Sprint(i)}}); err != nil || text(t, res) != fmt.Sprintf("echo: %d", i) {
			t.Errorf("echo while events is down: %v %v", res, err)
		}
	}
	w.events.restart()
	if res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "events__change", Arguments: map[string]any{}}); err != nil || text(t, res) != "changed" {
		t.Errorf("events after restart: %v %v", res, err)
	}
}

// TestAggregateCompletionAndTemplates: resource templates are exposed
// with rewritten URI templates; completion/complete reaches the owning
// member with its own prompt name or template URI.
func TestAggregateCompletionAndTemplates(t *testing.T) {
	w := newAggWorld(t)
	w.connect()
	kt := &keyTransport{header: "X-MCPGate-API-Key", value: "mcpg_alice"}
	cs := aggClient(t, w.g, "/mcp", kt, nil)
	defer cs.Close()
	tpl, err := cs.ListResourceTemplates(t.Context(), nil)
	if err != nil || len(tpl.ResourceTemplates) != 1 || tpl.ResourceTemplates[0].URITemplate != "mcpgate://notes/note://{id}" {
		t.Fatalf("resources/templates/list %v %v", tpl, err)
	}
	rr, err := cs.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: "mcpgate://notes/note://42"})
	if err != nil || rr.Contents[0].URI != "mcpgate://notes/note://42" || rr.Contents[0].Text != "templated" {
		t.Fatalf("resources/read of a template %v %v", rr, err)
	}
	for _, c := range []struct {
		ref  *mcp.CompleteReference
		want string
	}{
		{&mcp.CompleteReference{Type: "ref/prompt", Name: "notes__summarize"}, "ref/prompt:summarize"},
		{&mcp.CompleteReference{Type: "ref/resource", URI: "mcpgate://notes/note://{id}"}, "ref/resource:note://{id}"},
	} {
		res, err := cs.Complete(t.Context(), &mcp.CompleteParams{Ref: c.ref, Argument: mcp.CompleteParamsArgument{Name: "id", Value: "4"}})
		if err != nil || len(res.Completion.Values) != 1 || res.Completion.Values[0] != c.want {
			t.Errorf("complete %+v: %v %v", c.ref, res, err)
		}
	}
	var rpcErr *jsonrpc.Error
	if _, err := cs.Complete(t.Context(), &mcp.CompleteParams{Ref: &mcp.CompleteReference{Type: "ref/prompt", Name: "nobody__x"}, Argument: mcp.CompleteParamsArgument{Name: "a"}}); !errors.As(err, &rpcErr) || rpcErr.Code != -32602 {
		t.Errorf("complete of an unknown prompt: %v", err)
	}
}

func waitFor(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(20 * time.Second): // hang guard, not a timing assertion
		t.Fatalf("hang guard: %s never happened", what)
	}
}

// TestAggregateFourthMember: adding a member never renames an existing
// tool.
func TestAggregateFourthMember(t *testing.T) {
	w := newAggWorld(t)
	w.connect()
	kt := &keyTransport{header: "X-MCPGate-API-Key", value: "mcpg_alice"}
	cs := aggClient(t, w.g, "/mcp", kt, nil)
	before := allTools(t, cs)
	_ = cs.Close()
	up := newUpstream(t, true) // the same tool names as echo
	w.cp.setRoute("echo2", &route{mode: "none", upstream: up.url(), principals: map[string]bool{"alice": true}})
	cs = aggClient(t, w.g, "/mcp", kt, nil)
	defer cs.Close()
	after := allTools(t, cs)
	for _, n := range before {
		if !slices.Contains(after, n) {
			t.Errorf("tool %q gone after adding a member: %v", n, after)
		}
	}
	var added []string
	for _, n := range after {
		if !slices.Contains(before, n) {
			added = append(added, n)
		}
	}
	if !slices.Equal(added, []string{"echo2__echo", "echo2__secret", "echo2__slow"}) {
		t.Errorf("added %v", added)
	}
	if len(before) != 9 {
		t.Errorf("before %v", before)
	}
}

// TestAggregateVirtual: a virtual server's prefix, rename and include list.
func TestAggregateVirtual(t *testing.T) {
	w := newAggWorld(t)
	w.cp.mu.Lock()
	w.cp.virtuals = map[string][]aggDef{"work": {
		{server: "echo", prefix: "e.", renames: map[string]string{"slow": "wait"}, include: []string{"echo", "slow"}},
		{server: "events", exclude: []string{"work", "block", "sample"}},
	}}
	w.cp.mu.Unlock()
	kt := &keyTransport{header: "X-MCPGate-API-Key", value: "mcpg_alice"}
	cs := aggClient(t, w.g, "/work/mcp", kt, nil)
	defer cs.Close()
	if got, want := allTools(t, cs), []string{"e.echo", "events__change", "wait"}; !slices.Equal(got, want) {
		t.Errorf("tools %v, want %v", got, want)
	}
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "e.echo", Arguments: map[string]any{"text": "v"}})
	if err != nil || text(t, res) != "echo: v" {
		t.Errorf("e.echo: %v %v", res, err)
	}
	if cs.InitializeResult().ServerInfo.Name != "work" {
		t.Errorf("server info %+v", cs.InitializeResult().ServerInfo)
	}
}

// TestAggregateRaw covers the gateway's own answers on /mcp.
func TestAggregateRaw(t *testing.T) {
	w := newAggWorld(t)
	key := map[string]string{"X-MCPGate-API-Key": "mcpg_alice", "Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
	resp, body := w.g.do(t, "POST", "/mcp", key, initBody)
	if resp.StatusCode != 200 {
		t.Fatalf("initialize %d %s", resp.StatusCode, body)
	}
	handle := resp.Header.Get("Mcp-Session-Id")
	if handle == "" {
		t.Fatal("no handle")
	}
	withSession := func(h string) map[string]string {
		m := map[string]string{"Mcp-Session-Id": h}
		for k, v := range key {
			m[k] = v
		}
		return m
	}
	for _, c := range []struct {
		name, body string
		status     int
		want       string
	}{
		{"ping", `{"jsonrpc":"2.0","id":7,"method":"ping"}`, 200, `{"jsonrpc":"2.0","id":7,"result":{}}`},
		{"unknown method", `{"jsonrpc":"2.0","id":8,"method":"nope"}`, 200, `{"jsonrpc":"2.0","id":8,"error":{"code":-32601,"message":"Method not found"}}`},
		{"bad cursor", `{"jsonrpc":"2.0","id":9,"method":"tools/list","params":{"cursor":"abc"}}`, 200, `{"jsonrpc":"2.0","id":9,"error":{"code":-32602,"message":"Invalid cursor"}}`},
		{"unknown tool", `{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"zz","arguments":{}}}`, 200, `{"jsonrpc":"2.0","id":10,"error":{"code":-32602,"message":"Unknown tool"}}`},
		{"unknown resource", `{"jsonrpc":"2.0","id":11,"method":"resources/read","params":{"uri":"file:///x"}}`, 200, `{"jsonrpc":"2.0","id":11,"error":{"code":-32002,"message":"Resource not found"}}`},
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, 400, rpcInvalid},
		{"forged answer", `{"jsonrpc":"2.0","id":"mcpgate-xyz","result":{}}`, 400, rpcInvalid},
		{"answer to nothing", `{"jsonrpc":"2.0","id":5,"result":{}}`, 400, rpcInvalid},
	} {
		resp, body := w.g.do(t, "POST", "/mcp", withSession(handle), c.body)
		if resp.StatusCode != c.status || body != c.want {
			t.Errorf("%s: %d %s, want %d %s", c.name, resp.StatusCode, body, c.status, c.want)
		}
	}
	// A server route's handle does not open on the aggregate, nor the
	// aggregate's on a server route.
	resp, _ = w.g.do(t, "POST", "/echo/mcp", key, initBody)
	serverHandle := resp.Header.Get("Mcp-Session-Id")
	resp, body = w.g.do(t, "POST", "/mcp", withSession(serverHandle), `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	if resp.StatusCode != 404 || body != `{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"session not found"}}` {
		t.Errorf("server handle on /mcp: %d %s", resp.StatusCode, body)
	}
	resp, _ = w.g.do(t, "POST", "/echo/mcp", withSession(handle), `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	if resp.StatusCode != 404 {
		t.Errorf("aggregate handle on /echo/mcp: %d", resp.StatusCode)
	}
	// Bob's key cannot use alice's handle.
	bob := withSession(handle)
	bob["X-MCPGate-API-Key"] = "mcpg_bob"
	resp, _ = w.g.do(t, "POST", "/mcp", bob, `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	if resp.StatusCode != 404 {
		t.Errorf("bob with alice's handle: %d", resp.StatusCode)
	}
	// No credential: the aggregate's own challenge.
	resp, _ = w.g.do(t, "POST", "/mcp", map[string]string{"Content-Type": "application/json"}, `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer resource_metadata="`+w.g.srv.URL+`/.well-known/oauth-protected-resource/mcp"` {
		t.Errorf("anonymous: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	resp, _ = w.g.do(t, "DELETE", "/mcp", withSession(handle), "")
	if resp.StatusCode != 204 {
		t.Errorf("DELETE %d", resp.StatusCode)
	}
}

const rpcInvalid = `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request"}}`

// BenchmarkAggregateCallTool compares a tools/call through the root
// aggregate /mcp with the same call through the member's own route
// /echo/mcp, on one stack (fake control plane over real Connect, SSE
// upstream). ns/op and allocs/op cover the whole process (client, gateway,
// fake control plane, upstream). The gateway's own CPU is isolated with
// profiler labels: the gateway's server, its connections and every
// goroutine they start (upstream and control-plane connections included)
// carry side=gateway, so
//
//	go test ./dataplane/ -run XXX -bench BenchmarkAggregateCallTool/server -benchtime=4000x -cpuprofile s.cpu
//	go tool pprof -tagfocus side=gateway -top s.cpu | head -3
//
// gives the gateway's CPU for the run (divide by the iterations).
func BenchmarkAggregateCallTool(b *testing.B) {
	for _, via := range []string{"server", "aggregate"} {
		b.Run(via, func(b *testing.B) {
			cp := newFakeCP(b)
			up := newUpstream(b, false)
			cp.setRoute("echo", &route{mode: "static", upstream: up.url(), principals: map[string]bool{"alice": true}})
			g := newLabeledGateway(b, cp)
			endpoint, tool := g+"/echo/mcp", "echo"
			if via == "aggregate" {
				endpoint, tool = g+"/mcp", "echo__echo"
			}
			kt := &keyTransport{header: "X-MCPGate-API-Key", value: "mcpg_alice"}
			c := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
			cs, err := c.Connect(b.Context(), &mcp.StreamableClientTransport{Endpoint: endpoint, HTTPClient: &http.Client{Transport: kt}, MaxRetries: -1, DisableStandaloneSSE: true}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
			if err != nil {
				b.Fatal(err)
			}
			defer cs.Close()
			params := &mcp.CallToolParams{Name: tool, Arguments: map[string]any{"text": "x"}}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := cs.CallTool(b.Context(), params); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// newLabeledGateway serves a Proxy whose server goroutines (and all they
// start) carry the profiler label side=gateway; it returns the base URL.
func newLabeledGateway(b *testing.B, cp *fakeCP) string {
	var ready atomic.Pointer[dataplane.Proxy]
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ready.Load().ServeHTTP(w, r)
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	pprof.Do(ctx, pprof.Labels("side", "gateway"), func(ctx context.Context) {
		srv.Start()
		p, err := dataplane.New(dataplane.Config{PublicURL: srv.URL, ControlPlaneURLs: []string{cp.srv.URL}, DataPlaneToken: dpToken}, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		ready.Store(p)
		go func() {
			defer close(done)
			_ = p.Run(ctx)
		}()
	})
	b.Cleanup(func() {
		srv.Close()
		cancel()
		<-done
	})
	return srv.URL
}
