package health

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Probe tracks whether a data plane can reach a control plane: it GETs
// /readyz on every control-plane URL each interval. A control plane that
// answers 200 (ok or degraded) counts as reachable.
type Probe struct {
	urls     []string
	client   *http.Client
	interval time.Duration
	log      *slog.Logger

	mu        sync.Mutex
	up        map[string]bool
	probed    bool
	downSince time.Time
}

// NewProbe probes urls with client (which carries the data plane's TLS
// configuration) every interval (0: 2 s).
func NewProbe(urls []string, client *http.Client, interval time.Duration, log *slog.Logger) *Probe {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	return &Probe{urls: urls, client: client, interval: interval, log: log, up: map[string]bool{}}
}

// Run probes until ctx ends.
func (p *Probe) Run(ctx context.Context) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		p.Once(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Once probes every control plane once, concurrently.
func (p *Probe) Once(ctx context.Context) {
	var wg sync.WaitGroup
	res := make([]bool, len(p.urls))
	for i, u := range p.urls {
		wg.Go(func() { res[i] = p.probe(ctx, u) })
	}
	wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	reachable := false
	for i, u := range p.urls {
		if p.probed && p.up[u] != res[i] {
			p.log.InfoContext(ctx, "control plane reachability changed", slog.String("control_plane", u), slog.Bool("up", res[i]))
		}
		p.up[u] = res[i]
		reachable = reachable || res[i]
	}
	switch {
	case reachable:
		p.downSince = time.Time{}
	case p.downSince.IsZero():
		p.downSince = time.Now()
	}
	p.probed = true
}

func (p *Probe) probe(ctx context.Context, base string) bool {
	ctx, cancel := context.WithTimeout(ctx, min(p.interval, 2*time.Second))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Check is the data plane's readiness check.
func (p *Probe) Check(context.Context) Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.probed {
		return Status{State: Unavailable, Detail: "control planes not probed yet"}
	}
	n := 0
	for _, u := range p.urls {
		if p.up[u] {
			n++
		}
	}
	switch {
	case n == len(p.urls):
		return Status{State: OK}
	case n > 0:
		return Status{State: OK, Detail: "some control planes unreachable"}
	default:
		at := p.downSince.UTC()
		return Status{State: Unavailable, Detail: "no control plane reachable", Since: &at}
	}
}
