package main

import (
	"flag"
	"fmt"

	"github.com/mcpgate/mcpgate/controlplane/oauth"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// limitFlags are `mcpgate control`'s bounds on what anonymous callers may
// cost: the authorization server's per-address rate limits and the rate of
// the store's shared catch-up reads (each per replica).
type limitFlags struct {
	oauth   oauth.Config
	catchUp float64
	errs    []error
}

func registerLimitFlags(fs *flag.FlagSet, io stdio) *limitFlags {
	l := &limitFlags{catchUp: store.DefaultCatchUpPerSecond}
	// Each flag's default comes from its MCPGATE_* variable when set; a
	// malformed value is an error, not silently the built-in default.
	fromEnv := func(name, env string) {
		if v := io.env(env, ""); v != "" {
			if err := fs.Set(name, v); err != nil {
				l.errs = append(l.errs, fmt.Errorf("%w: %s is not a valid number", errUsage, env))
			}
		}
	}
	ints := []struct {
		p       *int
		name    string
		env     string
		def     int
		meaning string
	}{
		{&l.oauth.AuthorizePerMinute, "authorize-per-minute", "MCPGATE_AUTHORIZE_PER_MINUTE", oauth.DefaultAuthorizePerMin, "/authorize requests per minute per client address"},
		{&l.oauth.SigninPerMinute, "signin-per-minute", "MCPGATE_SIGNIN_PER_MINUTE", oauth.DefaultSigninPerMin, "/signin requests per minute per client address"},
		{&l.oauth.LookupPerMinute, "oauth-lookups-per-minute", "MCPGATE_OAUTH_LOOKUPS_PER_MINUTE", oauth.DefaultLookupPerMin, "/token, /revoke, /consent, /oauth/callback and /connections requests per minute per client address"},
		{&l.oauth.RegisterPerMinute, "register-per-minute", "MCPGATE_REGISTER_PER_MINUTE", oauth.DefaultRegisterPerMin, "client registrations per minute per client address"},
		{&l.oauth.RegisterPerHour, "register-per-hour", "MCPGATE_REGISTER_PER_HOUR", oauth.DefaultRegisterPerHour, "client registrations per hour from all addresses"},
	}
	for _, f := range ints {
		fs.IntVar(f.p, f.name, f.def, f.meaning+", per control-plane replica (or $"+f.env+")")
		fromEnv(f.name, f.env)
	}
	fs.Float64Var(&l.catchUp, "catchup-reads-per-second", store.DefaultCatchUpPerSecond,
		"etcd reads per second, per replica, that requests with unknown credentials may cause, shared by all of them (or $MCPGATE_CATCHUP_READS_PER_SECOND)")
	fromEnv("catchup-reads-per-second", "MCPGATE_CATCHUP_READS_PER_SECOND")
	return l
}

// validate reports the first malformed environment value or non-positive
// limit (errors are one line).
func (l *limitFlags) validate() error {
	if len(l.errs) > 0 {
		return l.errs[0]
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"authorize-per-minute", l.oauth.AuthorizePerMinute}, {"signin-per-minute", l.oauth.SigninPerMinute},
		{"oauth-lookups-per-minute", l.oauth.LookupPerMinute}, {"register-per-minute", l.oauth.RegisterPerMinute},
		{"register-per-hour", l.oauth.RegisterPerHour},
	} {
		if f.v < 1 {
			return fmt.Errorf("%w: --%s must be at least 1", errUsage, f.name)
		}
	}
	if !(l.catchUp > 0) {
		return fmt.Errorf("%w: --catchup-reads-per-second must be positive", errUsage)
	}
	return nil
}

func (l *limitFlags) storeOptions() []store.Option {
	return []store.Option{store.WithCatchUpRate(l.catchUp, store.DefaultCatchUpBurst)}
}
