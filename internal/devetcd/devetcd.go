// Package devetcd runs the embedded, durable single-member etcd of
// `mcpgate dev`.
package devetcd

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
)

// Start runs etcd with its data in dir, listening for clients on clientURL
// (e.g. http://127.0.0.1:2379, so etcdctl can inspect it; empty: a unix
// socket in dir), and returns an in-process client. stop closes both.
func Start(ctx context.Context, dir, clientURL string) (cli *clientv3.Client, stop func(), err error) {
	if clientURL == "" {
		clientURL = "unix://" + dir + "/etcd.sock"
	}
	cu, err := url.Parse(clientURL)
	if err != nil {
		return nil, nil, fmt.Errorf("etcd client url: %w", err)
	}
	pu := url.URL{Scheme: "unix", Host: dir + "/etcd-peer.sock"}
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = "dev", dir+"/etcd"
	cfg.Logger, cfg.LogLevel, cfg.LogOutputs = "zap", "error", []string{"stderr"}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("start etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, nil, errors.New("etcd not ready after 60s")
	case <-ctx.Done():
		e.Close()
		return nil, nil, ctx.Err()
	}
	cli = v3client.New(e.Server)
	return cli, func() { _ = cli.Close(); e.Close() }, nil
}
