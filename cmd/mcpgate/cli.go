package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"connectrpc.com/connect"

	"github.com/mcpgate/mcpgate/ops"
)

// stdio is what a command may touch of the process.
type stdio struct {
	out, err io.Writer
	getenv   func(string) (string, bool)
}

func (s stdio) env(name, def string) string {
	if v, ok := s.getenv(name); ok && v != "" {
		return v
	}
	return def
}

var (
	// errUsage marks a command-line mistake (exit 2).
	errUsage = errors.New("usage")
	// errReported marks an error already printed (flag's own messages).
	errReported = errors.New("reported")
)

const usage = `mcpgate — an MCP gateway

Run:
  mcpgate dev [--config FILE] [--data-dir DIR] [--listen ADDR] [--admin-listen ADDR] [--public-url URL]
  mcpgate control --etcd-endpoints URLS [--listen ADDR] [--vault-keyset-file FILE] [--dataplane-token T] [etcd TLS flags]
                  [--tls-cert F --tls-key F --client-ca F] [--metrics-listen ADDR] [--audit-log stdout|FILE]
                  [--otlp-endpoint URL] [--drain-timeout D]
  mcpgate proxy --control-plane URL[,URL...] --public-url URL [--listen ADDR] [--dataplane-token T]
                [--control-plane-cert F --control-plane-key F --control-plane-ca F] [--metrics-listen ADDR]
                [--audit-log stdout|FILE] [--otlp-endpoint URL] [--drain-timeout D]

Administer (--control-plane URL, --admin-key KEY, -o table|json):
  mcpgate apply -f FILE
  mcpgate servers list | get NAME | delete NAME
  mcpgate servers add NAME --url URL [--auth-type T] [--auth-value-file F|-] [--transport http|sse] [oauth2 flags]
  mcpgate principals list | get NAME | delete NAME
  mcpgate principals create NAME [--servers a,b] [--kind user|service_account] [--role member|admin]
  mcpgate groups list | get NAME | delete NAME
  mcpgate groups create NAME [--servers a,b] [--description D]
  mcpgate virtual-servers list | get NAME | delete NAME
  mcpgate virtual-servers add NAME --members a,b [--separator S] [--scopes a,b] [--description D]
  mcpgate keys create --principal P [--name N] [--expires 720h] | list [--principal P] | revoke ID
  mcpgate connections list [--principal P] [--server S] | revoke --principal P --server S
  mcpgate vault rotate-key [--promote ID]   (new primary vault key; every sealed record re-encrypted online)
  mcpgate vault add-key --keyset FILE       (offline: add a key to promote later; for several replicas)

Every flag --foo-bar of dev, control and proxy defaults to the variable
MCPGATE_FOO_BAR (e.g. MCPGATE_LISTEN, MCPGATE_DATAPLANE_TOKEN); a flag wins over
its variable. Secrets without a flag: MCPGATE_ADMIN_KEY, MCPGATE_VAULT_KEYSET
(the keyset's contents). Admin commands read MCPGATE_CONTROL_PLANE and
MCPGATE_ADMIN_KEY.
Run "mcpgate COMMAND -h" for a command's flags.
`

// run dispatches to a command. Only main exits.
func run(ctx context.Context, args []string, io stdio) error {
	if len(args) == 0 {
		fmt.Fprint(io.err, usage)
		return fmt.Errorf("%w: %w", errReported, errUsage)
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(io.out, usage)
		return nil
	}
	err := dispatch(ctx, args[0], args[1:], io)
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

func dispatch(ctx context.Context, cmd string, rest []string, io stdio) error {
	if v, args := verb(cmd, rest); v != nil {
		return v(ctx, args, io)
	}
	switch cmd {
	case "dev":
		return cmdDev(ctx, rest, io)
	case "control":
		return cmdControl(ctx, rest, io)
	case "proxy":
		return cmdProxy(ctx, rest, io)
	case "apply":
		return cmdApply(ctx, rest, io)
	case "servers":
		return cmdServers(ctx, rest, io)
	case "principals":
		return cmdPrincipals(ctx, rest, io)
	case "groups":
		return cmdGroups(ctx, rest, io)
	case "virtual-servers":
		return cmdVirtualServers(ctx, rest, io)
	case "keys":
		return cmdKeys(ctx, rest, io)
	case "connections":
		return cmdConnections(ctx, rest, io)
	case "vault":
		return cmdVault(ctx, rest, io)
	}
	return fmt.Errorf("%w: unknown command %q (run mcpgate --help)", errUsage, cmd)
}

// logFlags are the logging flags every long-running command takes.
type logFlags struct{ format, level string }

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.format, "log-format", "json", "log format: json or text")
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn or error")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("%w: --log-level %q", errUsage, l.level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var log *slog.Logger
	switch l.format {
	case "json":
		log = slog.New(slog.NewJSONHandler(w, opts))
	case "text":
		log = slog.New(slog.NewTextHandler(w, opts))
	default:
		return nil, fmt.Errorf("%w: --log-format %q: want json or text", errUsage, l.format)
	}
	slog.SetDefault(log)
	return log, nil
}

// newFlagSet returns a flag set that reports its own errors on w.
func newFlagSet(name string, w io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("mcpgate "+name, flag.ContinueOnError)
	fs.SetOutput(w)
	fs.Usage = func() {} // a flag error is one line; -h prints the flags in parse
	return fs
}

// parse parses args, allowing flags after positional arguments
// ("servers get NAME -o json").
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprintf(fs.Output(), "Usage of %s:\n", fs.Name())
				fs.PrintDefaults()
				return nil, errHelp
			}
			return nil, fmt.Errorf("%w: %w", errReported, errUsage)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// parseRun parses a long-running command's flags: each flag --foo-bar
// defaults to the variable MCPGATE_FOO_BAR (ops.ApplyEnv), which -h lists.
// The warnings (deprecated flags used) are for the command's logger.
func parseRun(fs *flag.FlagSet, args []string, io stdio) (warnings []string, err error) {
	ops.DocumentEnv(fs)
	if _, err := parse(fs, args); err != nil {
		return nil, err
	}
	warnings, err = ops.ApplyEnv(fs, io.getenv)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	return warnings, nil
}

// errHelp: -h was given; the usage is printed, exit 0.
var errHelp = errors.New("help")

// message is the one-line, human text of err.
func message(err error) string {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return err.Error()
	}
	prefix := strings.TrimSuffix(strings.TrimSuffix(err.Error(), ce.Error()), ": ")
	var text string
	switch ce.Code() {
	case connect.CodeUnavailable:
		text = "control plane unavailable: " + ce.Message()
	case connect.CodeUnauthenticated:
		text = "admin key missing or invalid (set MCPGATE_ADMIN_KEY or --admin-key)"
	case connect.CodePermissionDenied:
		text = "permission denied: the admin key's principal lacks the admin role"
	case connect.CodeAborted:
		text = "changed concurrently, retry: " + ce.Message()
	case connect.CodeDeadlineExceeded:
		text = "control plane did not answer in time"
	case connect.CodeInvalidArgument, connect.CodeNotFound, connect.CodeAlreadyExists, connect.CodeFailedPrecondition:
		text = ce.Message()
	default:
		text = ce.Code().String() + ": " + ce.Message()
	}
	if prefix != "" && prefix != err.Error() {
		return prefix + ": " + text
	}
	return text
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// writeFile0600 writes data to path readable only by its owner.
func writeFile0600(path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return err
	}
	return os.Chmod(path, 0o600)
}
