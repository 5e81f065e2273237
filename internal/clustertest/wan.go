package clustertest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// WAN is a network link between a far region and the etcd cluster: one
// toxiproxy TCP proxy per etcd member, in this process, whose latency and
// partitions the tests set. A control plane in the far region dials etcd
// through Endpoints.
type WAN struct {
	mu      sync.Mutex
	proxies []*toxiproxy.Proxy
}

// StartWAN starts one proxy per target ("host:port").
func StartWAN(tb testing.TB, targets []string) *WAN {
	tb.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	w := &WAN{}
	for i, t := range targets {
		p := toxiproxy.NewProxy(srv, fmt.Sprintf("wan-%d", i), "127.0.0.1:0", t)
		if err := p.Start(); err != nil {
			tb.Fatalf("wan proxy for %s: %v", t, err)
		}
		w.proxies = append(w.proxies, p)
	}
	tb.Cleanup(func() {
		for _, p := range w.proxies {
			p.Stop()
		}
	})
	return w
}

// Endpoints are the far side's etcd endpoints, comma-separated.
func (w *WAN) Endpoints() string {
	var out []string
	for _, p := range w.proxies {
		out = append(out, "http://"+p.Listen)
	}
	return strings.Join(out, ",")
}

func (w *WAN) add(name, typ, stream, attrs string) error {
	for _, p := range w.proxies {
		body := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":%s}`, name, typ, stream, attrs)
		if _, err := p.Toxics.AddToxicJson(strings.NewReader(body)); err != nil {
			return fmt.Errorf("%s: toxic %s: %w", p.Name, name, err)
		}
	}
	return nil
}

func (w *WAN) remove(name string) error {
	for _, p := range w.proxies {
		if err := p.Toxics.RemoveToxic(context.Background(), name); err != nil {
			return fmt.Errorf("%s: remove toxic %s: %w", p.Name, name, err)
		}
	}
	return nil
}

// SetLatency delays every byte by ms milliseconds in each direction (a
// round trip of 2×ms).
func (w *WAN) SetLatency(ms int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	attrs := fmt.Sprintf(`{"latency":%d,"jitter":0}`, ms)
	if err := w.add("latency-up", "latency", "upstream", attrs); err != nil {
		return err
	}
	return w.add("latency-down", "latency", "downstream", attrs)
}

// Partition drops every byte in both directions on every connection, open
// or new, without closing any: a black hole, as a cut WAN link looks from
// both ends (no RST, no FIN).
func (w *WAN) Partition() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.add("partition-up", "timeout", "upstream", `{"timeout":0}`); err != nil {
		return err
	}
	return w.add("partition-down", "timeout", "downstream", `{"timeout":0}`)
}

// Heal ends a partition (the latency stays).
func (w *WAN) Heal() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.remove("partition-up"); err != nil {
		return err
	}
	return w.remove("partition-down")
}
