package dataplane_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// bigBatch is a JSON-RPC batch of tools/call requests of about n bytes.
func bigBatch(n int) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := 0; b.Len() < n-200; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":{"text":"%s"}}}`, i, "abcdefghijklmnopqrstuvwxyz0123456789")
	}
	b.WriteByte(']')
	return b.Bytes()
}

// rawPost sends one POST with body over a fresh connection, writing the
// body from another goroutine (a gateway may answer before reading it all),
// and returns the response status (0 when no response could be read).
func rawPost(base, path string, header map[string]string, body []byte) int {
	u, _ := url.Parse(base)
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		return 0
	}
	defer c.Close()
	var h bytes.Buffer
	fmt.Fprintf(&h, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: %d\r\n", path, u.Host, len(body))
	for k, v := range header {
		fmt.Fprintf(&h, "%s: %s\r\n", k, v)
	}
	h.WriteString("\r\n")
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := c.Write(h.Bytes()); err != nil {
			return
		}
		_, _ = c.Write(body)
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	status := 0
	if err == nil {
		status = resp.StatusCode
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	c.Close()
	<-done
	return status
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkUnauthenticated4MB measures what one unauthenticated 4 MB batch
// costs the process (gateway, fake control plane and the sending client):
// wall time per request and CPU time per request.
func BenchmarkUnauthenticated4MB(b *testing.B) {
	cp := newFakeCP(b)
	up := newUpstream(b, true)
	cp.setRoute("Echo", &route{mode: "none", upstream: up.url(), principals: map[string]bool{"alice": true}})
	g := newGateway(b, cp, nil)
	body := bigBatch(4<<20 - 64)
	cpu0 := cpuTime()
	bad := 0
	for b.Loop() {
		if rawPost(g.srv.URL, "/Echo/mcp", nil, body) != http.StatusUnauthorized {
			bad++
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu_us/op")
	b.ReportMetric(float64(bad)/float64(b.N), "non401/op")
}

// BenchmarkCallUnderFlood measures an authenticated tools/call's latency
// (official SDK client through the gateway) alone and while 8 senders flood
// the gateway with unauthenticated 4 MB batches. Compare the p50_us of the
// two sub-benchmarks.
func BenchmarkCallUnderFlood(b *testing.B) {
	for _, flood := range []bool{false, true} {
		name := "idle"
		if flood {
			name = "flood8"
		}
		b.Run(name, func(b *testing.B) {
			cp := newFakeCP(b)
			up := newUpstream(b, true)
			cp.setRoute("Echo", &route{mode: "none", upstream: up.url(), principals: map[string]bool{"alice": true}})
			g := newGateway(b, cp, nil)
			kt := &keyTransport{header: "X-MCPGate-API-Key", value: "mcpg_alice"}
			c := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
			cs, err := c.Connect(b.Context(), &mcp.StreamableClientTransport{Endpoint: g.srv.URL + "/Echo/mcp", HTTPClient: &http.Client{Transport: kt}, MaxRetries: -1, DisableStandaloneSSE: true}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
			if err != nil {
				b.Fatal(err)
			}
			defer cs.Close()
			var stop atomic.Bool
			var wg sync.WaitGroup
			var floods atomic.Int64
			if flood {
				body := bigBatch(4<<20 - 64)
				for range 8 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for !stop.Load() {
							rawPost(g.srv.URL, "/Echo/mcp", nil, body)
							floods.Add(1)
						}
					}()
				}
				time.Sleep(200 * time.Millisecond) // let the flood build up (not an assertion)
			}
			params := &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"}}
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				t0 := time.Now()
				if _, err := cs.CallTool(b.Context(), params); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			stop.Store(true)
			wg.Wait()
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50_us")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99_us")
			}
			b.ReportMetric(float64(floods.Load()), "floods")
		})
	}
}
