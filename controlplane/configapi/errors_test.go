package configapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/mcpgate/mcpgate/controlplane/store"
)

// toConnectError sends fixed text only; causes go to the log.
func TestToConnectError(t *testing.T) {
	const leak = "etcd-host-10.0.0.7 sk-SECRET"
	for _, tc := range []struct {
		name string
		err  error
		code connect.Code
		msg  string
	}{
		{"validation", invalid("url: required"), connect.CodeInvalidArgument, "url: required"},
		{"named not found", notFound("mcp server"), connect.CodeNotFound, "mcp server not found"},
		{"store not found", fmt.Errorf("delete /mcpgate/v1/x %s: %w", leak, store.ErrNotFound), connect.CodeNotFound, "not found"},
		{"conflict", fmt.Errorf("put %s: %w", leak, store.ErrConflict), connect.CodeAborted, "revision conflict; re-read and retry"},
		{"unavailable", fmt.Errorf("put: %w: %s", store.ErrUnavailable, leak), connect.CodeUnavailable, "storage unavailable (etcd unreachable or without quorum): writes are refused, reads are served from the last known state; retry later"},
		{"unavailable deadline", fmt.Errorf("put: %w: %w", store.ErrUnavailable, context.DeadlineExceeded), connect.CodeUnavailable, "storage unavailable (etcd unreachable or without quorum): writes are refused, reads are served from the last known state; retry later"},
		{"canceled", context.Canceled, connect.CodeCanceled, "canceled"},
		{"deadline", context.DeadlineExceeded, connect.CodeDeadlineExceeded, "deadline exceeded"},
		{"other", errors.New(leak), connect.CodeInternal, "internal error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			s := &Service{log: slog.New(slog.NewTextHandler(&logs, nil))}
			err := s.toConnectError(t.Context(), tc.err)
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Code() != tc.code || ce.Message() != tc.msg {
				t.Fatalf("got %v, want %v %q", err, tc.code, tc.msg)
			}
			if strings.Contains(ce.Error(), "SECRET") {
				t.Fatalf("cause leaked: %v", ce)
			}
			if tc.code == connect.CodeInternal && !strings.Contains(logs.String(), "SECRET") {
				t.Fatal("internal cause not logged")
			}
		})
	}
	if (&Service{}).toConnectError(context.Background(), nil) != nil {
		t.Fatal("nil error mapped to non-nil")
	}
}

func TestNewKey(t *testing.T) {
	seen := map[string]bool{}
	counts := map[rune]int{}
	for range 2000 {
		k := NewKey()
		if !keyRE.MatchString(k) || len(k) != 45 {
			t.Fatalf("bad key shape %q", k[:10])
		}
		if seen[k] {
			t.Fatal("duplicate key")
		}
		seen[k] = true
		for _, c := range k[5:] {
			counts[c]++
		}
	}
	// 80000 draws over 62 symbols: each appears about 1290 times. A symbol
	// that never or rarely appears means a broken alphabet or draw.
	if len(counts) != 62 {
		t.Fatalf("%d distinct characters, want 62", len(counts))
	}
	for c, n := range counts {
		if n < 900 || n > 1700 {
			t.Fatalf("character %q drawn %d times; expected about 1290", c, n)
		}
	}
}
