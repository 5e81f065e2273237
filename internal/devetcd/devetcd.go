// Package devetcd runs the embedded, durable single-member etcd of
// `mcpgate dev`.
package devetcd

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
)

// Start runs etcd with its data in dir and returns an in-process client.
// stop closes both.
//
// etcd listens on nothing: no client port (any local user could read every
// record and plant an admin key through an unauthenticated loopback port),
// no peer port (a single member exchanges no raft messages) and no metrics
// port. The gateway reaches it through v3client, in memory; inspect the
// data with `mcpgate` admin commands, or stop dev and open the data
// directory with etcd's own tools.
func Start(ctx context.Context, dir string) (cli *clientv3.Client, stop func(), err error) {
	e, closeEtcd, err := start(ctx, dir)
	if err != nil {
		return nil, nil, err
	}
	cli = v3client.New(e.Server)
	return cli, func() { _ = cli.Close(); closeEtcd() }, nil
}

// devPeerURL names the member in its (single-member) cluster. Nothing
// listens on it.
const devPeerURL = "http://127.0.0.1:2380"

func start(ctx context.Context, dir string) (e *embed.Etcd, closeEtcd func(), err error) {
	pu, err := url.Parse(devPeerURL)
	if err != nil {
		return nil, nil, fmt.Errorf("etcd peer url: %w", err)
	}
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = "dev", dir+"/etcd"
	cfg.Logger, cfg.LogLevel, cfg.LogOutputs = "zap", "error", []string{"stderr"}
	// Closing etcd logs its listeners' "use of closed network connection"
	// as errors; a log that goes quiet on stop keeps Ctrl-C clean.
	var closing atomic.Bool
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
	lg, err := zc.Build(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return quietCore{c, &closing} }))
	if err != nil {
		return nil, nil, fmt.Errorf("etcd logger: %w", err)
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = nil, nil
	cfg.ListenClientHttpUrls, cfg.ListenMetricsUrls = nil, nil
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = nil, []url.URL{*pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	if e, err = embed.StartEtcd(cfg); err != nil {
		return nil, nil, fmt.Errorf("start etcd: %w", err)
	}
	closeEtcd = func() {
		closing.Store(true)
		e.Close()
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		closeEtcd()
		return nil, nil, errors.New("etcd not ready after 60s")
	case <-ctx.Done():
		closeEtcd()
		return nil, nil, ctx.Err()
	}
	return e, closeEtcd, nil
}

// quietCore drops every log entry once closing is set.
type quietCore struct {
	zapcore.Core
	closing *atomic.Bool
}

func (q quietCore) With(f []zapcore.Field) zapcore.Core { return quietCore{q.Core.With(f), q.closing} }

func (q quietCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if q.closing.Load() {
		return ce
	}
	return q.Core.Check(e, ce)
}
