// Package devetcd runs the embedded, durable single-member etcd of
// `mcpgate dev`.
package devetcd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
)

// Start runs etcd with its data in dir, listening for clients on clientURL
// (e.g. http://127.0.0.1:2379, so etcdctl can inspect it; empty: a free
// loopback port), and returns an in-process client. stop closes both.
func Start(ctx context.Context, dir, clientURL string) (cli *clientv3.Client, stop func(), err error) {
	// etcd takes a unix socket's path from the URL's host, which cannot hold
	// a "/": free loopback ports are used instead.
	if clientURL == "" {
		if clientURL, err = freeLoopbackURL(); err != nil {
			return nil, nil, err
		}
	}
	cu, err := url.Parse(clientURL)
	if err != nil {
		return nil, nil, fmt.Errorf("etcd client url: %w", err)
	}
	peer, err := freeLoopbackURL()
	if err != nil {
		return nil, nil, err
	}
	pu, err := url.Parse(peer)
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
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("start etcd: %w", err)
	}
	closeEtcd := func() {
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
	cli = v3client.New(e.Server)
	return cli, func() { _ = cli.Close(); closeEtcd() }, nil
}

// freeLoopbackURL returns http://127.0.0.1:<a port free right now>.
func freeLoopbackURL() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port for etcd: %w", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return "http://" + addr, nil
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
