package bridge

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestDowngrade(t *testing.T) {
	cases := []struct{ in, want string }{
		{
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"c","version":"1"},"io.modelcontextprotocol/logLevel":"info","progressToken":7}}}`,
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"progressToken":7}}}`,
		},
		{
			`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"},"cursor":"x"}}`,
			`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"x"}}`,
		},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`},
	}
	for _, tc := range cases {
		got, err := Downgrade([]byte(tc.in))
		if err != nil || string(got) != tc.want {
			t.Errorf("Downgrade(%s) = %s, %v", tc.in, got, err)
		}
	}
	if _, err := Downgrade([]byte(`[1]`)); err != ErrMalformed {
		t.Errorf("array: %v", err)
	}
}

func TestDiscover(t *testing.T) {
	got, err := Discover(`"a"`, jsontext.Value(`{"protocolVersion":"2025-11-25","capabilities":{"tools":{"listChanged":true},"resources":{"subscribe":true,"listChanged":true},"logging":{}},"serverInfo":{"name":"up","version":"2"},"instructions":"use \"echo\""}`))
	want := `{"jsonrpc":"2.0","id":"a","result":{"supportedVersions":["2026-07-28"],"capabilities":{"tools":{},"resources":{},"logging":{}},"instructions":"use \"echo\"","_meta":{"io.modelcontextprotocol/serverInfo":{"name":"up","version":"2"}},"ttlMs":0,"cacheScope":"private","resultType":"complete"}}`
	if err != nil || string(got) != want {
		t.Errorf("Discover = %s, %v\nwant %s", got, err, want)
	}
	if _, err := Discover("1", jsontext.Value(`[]`)); err != ErrMalformed {
		t.Errorf("array init: %v", err)
	}
}

func TestIsLegacy(t *testing.T) {
	rej := `{"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"x","data":{"supported":["2025-11-25","2025-06-18"],"requested":"2026-07-28"}}}`
	for _, tc := range []struct {
		status int
		body   string
		want   bool
	}{
		{400, rej, true},
		{200, rej, false},
		{400, strings.Replace(rej, `"2025-06-18"`, `"2026-07-28"`, 1), false},
		{400, strings.Replace(rej, "-32022", "-32020", 1), false},
		{400, `{"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"x","data":{"supported":[]}}}`, false},
		{400, `not json`, false},
	} {
		if got := IsLegacyRejection(tc.status, []byte(tc.body)); got != tc.want {
			t.Errorf("IsLegacyRejection(%d, %s) = %v", tc.status, tc.body, got)
		}
	}
	disc := `{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2025-11-25"]}}`
	if !IsLegacyDiscover("application/json", []byte(disc)) || !IsLegacyDiscover("text/event-stream", []byte("event: message\ndata: "+disc+"\n\n")) {
		t.Error("legacy discover not recognised")
	}
	if IsLegacyDiscover("application/json", []byte(strings.Replace(disc, "2025-11-25", "2026-07-28", 1))) {
		t.Error("2026 discover taken for legacy")
	}
}

// legacyServer is a stateful Go SDK server counting initializes and
// recording the headers of each.
func legacyServer(t *testing.T) (*httptest.Server, *atomic.Int32, *sync.Map) {
	t.Helper()
	s := mcp.NewServer(&mcp.Implementation{Name: "legacy", Version: "1"}, &mcp.ServerOptions{Instructions: "be nice"})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
	var inits atomic.Int32
	var headers sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		if strings.Contains(string(b), `"initialize"`) {
			inits.Add(1)
			headers.Store(inits.Load(), r.Header.Clone())
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &inits, &headers
}

// TestSessionsLRU: one initialize per key (concurrent opens share it), the
// cache holds at most max sessions (the least recently used goes), Drop
// forgets only the session it names, and the initialize carries the
// decision's headers and the client's capabilities.
func TestSessionsLRU(t *testing.T) {
	srv, inits, headers := legacyServer(t)
	c := NewSessions(srv.Client(), 2)
	hdr := http.Header{"X-Api-Key": {"upstream-secret"}}
	meta, err := ClientMetaOf([]byte(`{"params":{"_meta":{"io.modelcontextprotocol/clientCapabilities":{"elicitation":{}},"io.modelcontextprotocol/clientInfo":{"name":"c","version":"1"}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	k := func(p string) Key { return Key{Principal: p, Route: "r", URL: srv.URL, Digest: meta.Digest()} }
	var wg sync.WaitGroup
	var first sync.Map
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := c.Open(t.Context(), k("a"), srv.URL, hdr, meta)
			if err != nil {
				t.Error(err)
				return
			}
			first.Store(i, s)
		}()
	}
	wg.Wait()
	if inits.Load() != 1 {
		t.Fatalf("%d initializes for one key", inits.Load())
	}
	h, _ := headers.Load(int32(1))
	if h.(http.Header).Get("X-Api-Key") != "upstream-secret" || h.(http.Header).Get("Mcp-Protocol-Version") != Version20251125 {
		t.Errorf("initialize headers %v", h)
	}
	sa, _ := c.Open(t.Context(), k("a"), srv.URL, hdr, meta)
	var init struct {
		Instructions string `json:"instructions"`
	}
	if err := json.Unmarshal(sa.Init, &init); err != nil || init.Instructions != "be nice" || sa.ID == "" {
		t.Errorf("session %+v", sa)
	}
	for _, p := range []string{"b", "a", "c"} { // b is now least recent: evicted by c
		if _, err := c.Open(t.Context(), k(p), srv.URL, hdr, meta); err != nil {
			t.Fatal(err)
		}
	}
	if c.Len() != 2 || inits.Load() != 3 {
		t.Fatalf("len %d, inits %d", c.Len(), inits.Load())
	}
	if _, err := c.Open(t.Context(), k("b"), srv.URL, hdr, meta); err != nil || inits.Load() != 4 {
		t.Fatalf("evicted key not reopened: %v %d", err, inits.Load())
	}
	c.Drop(k("c"), sa) // not c's session: kept
	if c.Len() != 2 {
		t.Fatalf("Drop removed another session")
	}
	sb, _ := c.Open(t.Context(), k("b"), srv.URL, hdr, meta)
	c.Drop(k("b"), sb)
	if c.Len() != 1 {
		t.Fatalf("Drop kept the session")
	}
	if _, err := c.Open(t.Context(), k("x"), "http://127.0.0.1:1/mcp", hdr, meta); err == nil {
		t.Error("unreachable upstream opened")
	}
}

// FuzzBridgeParsers: what the bridge reads from clients and upstreams never
// panics; Downgrade's output is one JSON object without the 2026 _meta keys
// in params._meta.
func FuzzBridgeParsers(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"e","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","x":1}}}`))
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"x","data":{"supported":["2025-11-25"]}}}`))
	f.Add([]byte("data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"supportedVersions\":[\"2025-11-25\"]}}\n\n"))
	f.Add([]byte(`{"params":{"_meta":{"io.modelcontextprotocol/clientCapabilities":{"a":1},"io.modelcontextprotocol/clientInfo":[]}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		IsLegacyRejection(400, b)
		IsLegacyDiscover("text/event-stream", b)
		IsLegacyDiscover("application/json", b)
		if m, err := ClientMetaOf(b); err == nil {
			_ = m.Digest()
		}
		_, _ = Discover("1", b)
		_, _ = InitializeFromDiscover("1", "2025-11-25", b)
		IsModernOnlyRejection(400, b)
		if m, _, err := ClientMetaOfInitialize(b); err == nil {
			if enc, err := EncodeMeta(m); err == nil {
				if back, err := DecodeMeta(enc); err != nil || !bytes.Equal(back.Capabilities, m.Capabilities) || !bytes.Equal(back.ClientInfo, m.ClientInfo) {
					t.Fatalf("meta round trip %s: %+v %v", enc, back, err)
				}
				if up, err := Upgrade(b, m); err == nil && !json.Valid(up) {
					t.Fatalf("Upgrade output %q", up)
				}
			}
		}
		out, err := Downgrade(b)
		if err != nil {
			return
		}
		var msg struct {
			Params struct {
				Meta map[string]any `json:"_meta"`
			} `json:"params"`
		}
		if !json.Valid(out) {
			t.Fatalf("Downgrade output %q", out)
		}
		if unmarshal(out, &msg) == nil { // exact names, as Downgrade reads them
			for _, k := range []string{MetaProtocolVersion, MetaClientInfo, MetaClientCapabilities, MetaLogLevel} {
				if _, ok := msg.Params.Meta[k]; ok {
					t.Fatalf("Downgrade kept %s: %s", k, out)
				}
			}
		}
	})
}

func TestUpgrade(t *testing.T) {
	m, err := DecodeMeta(`{"caps":{"elicitation":{}},"info":{"name":"c","version":"1"}}`)
	if err != nil {
		t.Fatal(err)
	}
	if enc, err := EncodeMeta(m); err != nil || enc != `{"caps":{"elicitation":{}},"info":{"name":"c","version":"1"}}` {
		t.Errorf("EncodeMeta = %s, %v", enc, err)
	}
	cases := []struct{ in, want string }{
		{
			`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,
			`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{}},"io.modelcontextprotocol/clientInfo":{"name":"c","version":"1"}}}}`,
		},
		{
			`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"e","_meta":{"progressToken":3,"io.modelcontextprotocol/protocolVersion":"2099-01-01"}}}`,
			`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"e","_meta":{"progressToken":3,"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{}},"io.modelcontextprotocol/clientInfo":{"name":"c","version":"1"}}}}`,
		},
	}
	for _, tc := range cases {
		if got, err := Upgrade([]byte(tc.in), m); err != nil || string(got) != tc.want {
			t.Errorf("Upgrade(%s) = %s, %v", tc.in, got, err)
		}
	}
	if _, err := Upgrade([]byte(`{"jsonrpc":"2.0","id":1,"method":"x","params":[]}`), m); err != ErrMalformed {
		t.Errorf("array params: %v", err)
	}
	if _, err := DecodeMeta(`{"caps":[]}`); err != ErrMalformed {
		t.Errorf("DecodeMeta array caps: %v", err)
	}
}

func TestWithoutInputCapabilities(t *testing.T) {
	m, err := WithoutInputCapabilities(ClientMeta{Capabilities: jsontext.Value(`{"roots":{"listChanged":true},"sampling":{},"elicitation":{"form":{}},"experimental":{"x":{}}}`)})
	if err != nil || string(m.Capabilities) != `{"experimental":{"x":{}}}` {
		t.Errorf("%s %v", m.Capabilities, err)
	}
}

func TestInitializeFromDiscover(t *testing.T) {
	disc := jsontext.Value(`{"supportedVersions":["2026-07-28"],"capabilities":{"tools":{}},"instructions":"hi","_meta":{"io.modelcontextprotocol/serverInfo":{"name":"s","version":"3"}}}`)
	for requested, version := range map[string]string{"2025-06-18": "2025-06-18", "2024-01-01": "2025-11-25", "2026-07-28": "2025-11-25"} {
		got, err := InitializeFromDiscover("7", requested, disc)
		want := `{"jsonrpc":"2.0","id":7,"result":{"protocolVersion":"` + version + `","capabilities":{"tools":{}},"serverInfo":{"name":"s","version":"3"},"instructions":"hi"}}`
		if err != nil || string(got) != want {
			t.Errorf("InitializeFromDiscover(%s) = %s, %v", requested, got, err)
		}
	}
}

func TestIsModernOnlyRejection(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		want   bool
	}{
		{400, "Bad Request: Unsupported protocol version (supported versions: 2026-07-28)\n", true},
		{400, "Bad Request: Unsupported protocol version (supported versions: 2026-07-28,2025-11-25)\n", false},
		{400, "Bad Request: Unsupported protocol version (supported versions: )\n", false},
		{404, "Bad Request: Unsupported protocol version (supported versions: 2026-07-28)\n", false},
		{400, `{"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"x","data":{"supported":["2026-07-28"]}}}`, true},
		{400, `{"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"x","data":{"supported":["2025-11-25"]}}}`, false},
		{400, `Bad Request: missing session ID`, false},
	} {
		if got := IsModernOnlyRejection(tc.status, []byte(tc.body)); got != tc.want {
			t.Errorf("IsModernOnlyRejection(%d, %q) = %v", tc.status, tc.body, got)
		}
	}
}
