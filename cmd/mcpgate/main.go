// Command mcpgate is the MCP gateway: `mcpgate dev` runs everything on one
// machine; `control` and `proxy` run the two planes; the other commands
// administer a running gateway.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], stdio{out: os.Stdout, err: os.Stderr, getenv: os.LookupEnv})
	stop()
	if err != nil {
		code := 1
		if errors.Is(err, errUsage) {
			code = 2
		}
		if !errors.Is(err, errReported) {
			fmt.Fprintln(os.Stderr, "mcpgate: "+oneLine(message(err)))
		}
		os.Exit(code)
	}
}
