package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1/authorizev1connect"
)

// failPenalty is how long a replica that just failed is skipped while others
// are available.
const failPenalty = 2 * time.Second

// controlPlane spreads calls over the control-plane replicas round-robin,
// skips a replica that just failed, and retries the next one on transport
// or unavailable errors while the caller's deadline allows.
type controlPlane struct {
	replicas []*replica
	next     atomic.Uint64
	token    string
	client   *http.Client
}

type replica struct {
	base   string
	client authorizev1connect.AuthorizeServiceClient

	mu         sync.Mutex
	failedTill time.Time
}

func newControlPlane(urls []string, token string, hc *http.Client) (*controlPlane, error) {
	cp := &controlPlane{token: token, client: hc}
	auth := connect.WithInterceptors(bearerInterceptor(token))
	for _, raw := range urls {
		u, err := url.Parse(strings.TrimRight(raw, "/"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("dataplane: control-plane URL %q must be an absolute http(s) URL", raw)
		}
		base := u.String()
		cp.replicas = append(cp.replicas, &replica{
			base: base,
			// Decisions are small and cross a data-center link at most:
			// gzip cost more CPU than it saved (profiled), so don't ask
			// for it.
			client: authorizev1connect.NewAuthorizeServiceClient(hc, base, auth, connect.WithAcceptCompression("gzip", nil, nil)),
		})
	}
	return cp, nil
}

// bearerInterceptor adds the data-plane credential to every call, unary
// and streaming.
func bearerInterceptor(token string) connect.Interceptor { return bearer(token) }

type bearer string

func (b bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if b != "" {
			req.Header().Set("Authorization", "Bearer "+string(b))
		}
		return next(ctx, req)
	}
}

func (b bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		if b != "" {
			conn.RequestHeader().Set("Authorization", "Bearer "+string(b))
		}
		return conn
	}
}

func (b bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// order returns the replicas to try: round-robin start, healthy ones first,
// the recently failed ones last.
func (cp *controlPlane) order() []*replica {
	n := len(cp.replicas)
	start := int(cp.next.Add(1)-1) % n
	now := time.Now()
	var ok, bad []*replica
	for i := range n {
		r := cp.replicas[(start+i)%n]
		r.mu.Lock()
		failed := now.Before(r.failedTill)
		r.mu.Unlock()
		if failed {
			bad = append(bad, r)
		} else {
			ok = append(ok, r)
		}
	}
	return append(ok, bad...)
}

func (r *replica) markFailed() {
	r.mu.Lock()
	r.failedTill = time.Now().Add(failPenalty)
	r.mu.Unlock()
}

func (r *replica) markOK() {
	r.mu.Lock()
	r.failedTill = time.Time{}
	r.mu.Unlock()
}

// retryable reports whether another replica may succeed where this one
// failed: transport failures and unavailable, not answers.
func retryable(err error) bool {
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable:
		return true
	case connect.CodeUnknown, connect.CodeInternal:
		return !connect.IsWireError(err)
	}
	return false
}

// call runs fn against replicas until one answers or ctx ends.
func call[T any](ctx context.Context, cp *controlPlane, fn func(context.Context, authorizev1connect.AuthorizeServiceClient) (T, error)) (T, error) {
	var zero T
	var last error
	for _, r := range cp.order() {
		if err := ctx.Err(); err != nil {
			break
		}
		res, err := fn(ctx, r.client)
		if err == nil {
			r.markOK()
			return res, nil
		}
		last = err
		// A replica that dies mid-call resets its HTTP/2 streams, which
		// the client reports as canceled although our ctx is not: try the
		// next replica.
		lost := connect.CodeOf(err) == connect.CodeCanceled && ctx.Err() == nil
		if !retryable(err) && !lost {
			return zero, err
		}
		r.markFailed()
	}
	if last == nil {
		last = ctx.Err()
	}
	if last == nil {
		last = errors.New("no control-plane replica")
	}
	return zero, last
}

// relayTargets returns the replica base URLs in call order (for the OAuth
// relay, which is plain HTTP).
func (cp *controlPlane) relayTargets() []*replica { return cp.order() }
