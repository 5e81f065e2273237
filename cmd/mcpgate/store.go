package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/mcpgate/mcpgate/controlplane/store"
)

// startStore runs st's cache until stop is called and waits (up to
// syncWait) for its first listing. stop waits for the cache to end, or for
// its own context.
func startStore(ctx context.Context, st *store.Store, syncWait time.Duration, log *slog.Logger) (stop func(context.Context), err error) {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := st.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("store stopped", slog.Any("err", err))
		}
	}()
	stop = func(c context.Context) {
		cancel()
		select {
		case <-done:
		case <-c.Done():
		}
	}
	syncCtx, syncCancel := context.WithTimeout(ctx, syncWait)
	defer syncCancel()
	if err := st.WaitSynced(syncCtx); err != nil {
		stop(context.Background())
		return nil, err
	}
	return stop, nil
}
