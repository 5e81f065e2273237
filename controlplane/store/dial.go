package store

import (
	"crypto/tls"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// EtcdConfig says how to reach an external etcd cluster.
type EtcdConfig struct {
	Endpoints []string
	TLS       *tls.Config // nil: plaintext
	Username  string
	Password  string
}

// Dial connects to an external etcd cluster. The client keeps reconnecting
// by itself and fails over between endpoints.
func Dial(cfg EtcdConfig) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		TLS:                  cfg.TLS,
		Username:             cfg.Username,
		Password:             cfg.Password,
		DialTimeout:          10 * time.Second,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		// Reconnect promptly once a cut link returns (gRPC's defaults back
		// off to 120 s and wait 20 s per connection attempt): a replica in
		// a far region catches up within about two seconds of the link
		// coming back (internal/clustertest TestFarRegion).
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: time.Second,
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	return cli, nil
}
