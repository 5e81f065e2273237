// Package ops holds what the gateway's long-running commands share to run
// in production: the one flag → environment mapping (every flag --foo-bar
// has the variable MCPGATE_FOO_BAR, derived, never written by hand) and the
// operational flags both planes take (metrics, audit, tracing, drain). Its
// subpackages are the runtime pieces behind those flags: audit, metrics,
// tracing, health, tlsconfig and httpserver.
package ops

import (
	"flag"
	"fmt"
	"strings"
	"time"
)

// EnvPrefix starts every variable of the gateway's flags.
const EnvPrefix = "MCPGATE_"

// EnvName is the variable of the flag name: "vault-keyset-file" →
// "MCPGATE_VAULT_KEYSET_FILE".
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// alias is a deprecated flag name of another flag: setting it sets the
// other flag. It has no variable of its own.
type alias struct {
	target *flag.Flag
}

func (a *alias) String() string {
	if a == nil || a.target == nil {
		return ""
	}
	return a.target.Value.String()
}

func (a *alias) Set(v string) error { return a.target.Value.Set(v) }

// IsBoolFlag keeps "--old" working when the target is a boolean flag.
func (a *alias) IsBoolFlag() bool {
	b, ok := a.target.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// Deprecate defines old as a deprecated name of the already defined flag
// name. Using it sets name and makes ApplyEnv return a warning; it has no
// variable of its own (its derived name may mean something else).
func Deprecate(fs *flag.FlagSet, old, name string) {
	target := fs.Lookup(name)
	if target == nil {
		panic("ops.Deprecate: no flag " + name)
	}
	fs.Var(&alias{target: target}, old, "deprecated: use --"+name)
}

// DocumentEnv appends each flag's variable to its usage text, so -h lists
// every variable. Call it once, after defining the flags.
func DocumentEnv(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		if _, ok := f.Value.(*alias); ok {
			return
		}
		f.Usage += " ($" + EnvName(f.Name) + ")"
	})
}

// ApplyEnv sets every flag of fs that the command line did not set from its
// variable (EnvName), when that variable is set and not empty: a flag wins
// over its variable, which wins over the default. Call it after fs.Parse.
// lookup is os.LookupEnv or a test's map. A malformed value is an error
// naming the variable, never echoing the value (variables carry secrets).
// The warnings are one line each, for the command's logger: deprecated
// flag names that were used.
func ApplyEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) (warnings []string, err error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) {
		set[f.Name] = true
		if a, ok := f.Value.(*alias); ok {
			set[a.target.Name] = true
			warnings = append(warnings, fmt.Sprintf("--%s is deprecated; use --%s", f.Name, a.target.Name))
		}
	})
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || set[f.Name] {
			return
		}
		if _, ok := f.Value.(*alias); ok {
			return
		}
		name := EnvName(f.Name)
		v, ok := lookup(name)
		if !ok || v == "" {
			return
		}
		if serr := f.Value.Set(v); serr != nil {
			err = fmt.Errorf("%s is not a valid %s", name, kind(f.Value))
		}
	})
	return warnings, err
}

// kind names what a flag's value must be, for error messages.
func kind(v flag.Value) string {
	g, ok := v.(flag.Getter)
	if !ok {
		return "value"
	}
	switch g.Get().(type) {
	case int, int64, uint, uint64, float64:
		return "number"
	case time.Duration:
		return "duration"
	case bool:
		return "boolean"
	}
	return "value"
}

// Flags are the operational settings both planes take.
type Flags struct {
	// MetricsListen serves /metrics, /healthz and /readyz ("": none).
	MetricsListen string
	// AuditLog is "", "stdout" or a file path.
	AuditLog string
	// OTLPEndpoint turns tracing on (OTLP/gRPC collector URL).
	OTLPEndpoint string
	// DrainTimeout bounds in-flight requests and streams after SIGTERM.
	DrainTimeout time.Duration
}

// RegisterMetricsAudit defines --metrics-listen and --audit-log only (what
// `mcpgate dev` takes of Flags).
func (o *Flags) RegisterMetricsAudit(fs *flag.FlagSet, metricsExample, audited string) {
	fs.StringVar(&o.MetricsListen, "metrics-listen", "", "listener for /metrics, /healthz and /readyz (e.g. "+metricsExample+"; empty: none)")
	fs.StringVar(&o.AuditLog, "audit-log", "", "audit log: stdout or a file (one JSON line per "+audited+"; empty: none)")
}

// DefaultDrainTimeout is --drain-timeout's default.
const DefaultDrainTimeout = 10 * time.Second

// Register defines the operational flags on fs. metricsExample is an
// address for the help text; audited says what one audit line records;
// drained what draining waits for.
func (o *Flags) Register(fs *flag.FlagSet, metricsExample, audited, drained string) {
	o.RegisterMetricsAudit(fs, metricsExample, audited)
	fs.StringVar(&o.OTLPEndpoint, "otlp-endpoint", "", "OpenTelemetry collector (OTLP/gRPC URL, e.g. http://127.0.0.1:4317); tracing is off without it")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", DefaultDrainTimeout, "on SIGTERM, how long "+drained+" may run before connections close")
}
