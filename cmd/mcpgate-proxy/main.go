// Command mcpgate-proxy is the thin data-plane binary: the same as
// `mcpgate proxy`, with no etcd and no control-plane code linked.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/mcpgate/mcpgate/dataplane/proxyrun"
	"github.com/mcpgate/mcpgate/ops"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mcpgate-proxy: "+err.Error())
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("mcpgate-proxy", flag.ContinueOnError)
	format := fs.String("log-format", "json", "log format: json or text")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	cfg := proxyrun.RegisterFlags(fs)
	ops.DocumentEnv(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	warnings, err := ops.ApplyEnv(fs, os.LookupEnv)
	if err != nil {
		return err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("--log-level %q", *level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var log *slog.Logger
	switch *format {
	case "json":
		log = slog.New(slog.NewJSONHandler(os.Stderr, opts))
	case "text":
		log = slog.New(slog.NewTextHandler(os.Stderr, opts))
	default:
		return fmt.Errorf("--log-format %q: want json or text", *format)
	}
	slog.SetDefault(log)
	for _, w := range warnings {
		log.Warn(w)
	}
	return proxyrun.Run(ctx, cfg(), log)
}
