package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Etcd is a real etcd cluster of separate processes on loopback.
type Etcd struct {
	Members []*Process
	// ClientURLs[i] is member i's client URL.
	ClientURLs []string
}

// StartEtcd starts an n-member cluster in dir and waits until every member
// is healthy.
func StartEtcd(tb testing.TB, bin, dir string, n int) *Etcd {
	tb.Helper()
	ports := freePorts(tb, 2*n)
	var peers []string
	e := &Etcd{}
	for i := range n {
		peers = append(peers, fmt.Sprintf("m%d=http://127.0.0.1:%d", i, ports[2*i+1]))
	}
	for i := range n {
		client := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i])
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])
		args := []string{
			"--name", fmt.Sprintf("m%d", i),
			"--data-dir", filepath.Join(dir, fmt.Sprintf("etcd-m%d", i)),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(peers, ","),
			"--initial-cluster-state", "new", "--initial-cluster-token", "clustertest",
			// Fast failure detection keeps fault tests short; fsync off:
			// durability across machine crashes is not what is tested.
			"--heartbeat-interval", "50", "--election-timeout", "500",
			"--unsafe-no-fsync", "--log-level", "warn",
		}
		e.Members = append(e.Members, newProcess(tb, dir, fmt.Sprintf("etcd-m%d", i), bin, args, nil))
		e.ClientURLs = append(e.ClientURLs, client)
	}
	for _, m := range e.Members {
		if err := m.Start(); err != nil {
			tb.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range e.Members {
		if err := e.WaitHealthy(ctx, i); err != nil {
			tb.Fatal(err)
		}
	}
	return e
}

// Endpoints is the comma-separated client URL list.
func (e *Etcd) Endpoints() string { return strings.Join(e.ClientURLs, ",") }

// WaitHealthy waits until member i reports health (it has a leader and
// serves a linearizable read).
func (e *Etcd) WaitHealthy(ctx context.Context, i int) error {
	return waitHTTP(ctx, e.Members[i], e.ClientURLs[i]+"/health", func(r *http.Response) bool {
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode == http.StatusOK && strings.Contains(string(b), `"health":"true"`)
	})
}

// Restart starts member i again on its data directory and waits for it to
// rejoin.
func (e *Etcd) Restart(ctx context.Context, i int) error {
	if err := e.Members[i].Start(); err != nil {
		return err
	}
	return e.WaitHealthy(ctx, i)
}

// Leader returns the index of the member that is raft leader, as member i
// sees it (-1 when unknown).
func (e *Etcd) Leader(ctx context.Context) int {
	type status struct {
		Header struct {
			MemberID string `json:"member_id"`
		} `json:"header"`
		Leader string `json:"leader"`
	}
	var leader string
	ids := make([]string, len(e.ClientURLs))
	for i, u := range e.ClientURLs {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u+"/v3/maintenance/status", strings.NewReader("{}"))
		if err != nil {
			continue
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue
		}
		var s status
		err = json.NewDecoder(resp.Body).Decode(&s)
		resp.Body.Close()
		if err != nil {
			continue
		}
		ids[i], leader = s.Header.MemberID, s.Leader
	}
	for i, id := range ids {
		if id != "" && id == leader {
			return i
		}
	}
	return -1
}
