package main

import (
	"flag"
	"fmt"

	"github.com/mcpgate/mcpgate/controlplane/oauth"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// limitFlags are `mcpgate control`'s bounds on what anonymous callers may
// cost: the authorization server's per-address rate limits and the rate of
// the store's shared catch-up reads (each per replica). Their variables
// (MCPGATE_AUTHORIZE_PER_MINUTE, ...) are applied by ops.ApplyEnv; a
// malformed value is an error, not silently the built-in default.
type limitFlags struct {
	oauth   oauth.Config
	catchUp float64
}

func registerLimitFlags(fs *flag.FlagSet) *limitFlags {
	l := &limitFlags{catchUp: store.DefaultCatchUpPerSecond}
	ints := []struct {
		p       *int
		name    string
		def     int
		meaning string
	}{
		{&l.oauth.AuthorizePerMinute, "authorize-per-minute", oauth.DefaultAuthorizePerMin, "/authorize requests per minute per client address"},
		{&l.oauth.SigninPerMinute, "signin-per-minute", oauth.DefaultSigninPerMin, "/signin requests per minute per client address"},
		{&l.oauth.LookupPerMinute, "oauth-lookups-per-minute", oauth.DefaultLookupPerMin, "/token, /revoke, /consent, /oauth/callback and /connections requests per minute per client address"},
		{&l.oauth.RegisterPerMinute, "register-per-minute", oauth.DefaultRegisterPerMin, "client registrations per minute per client address"},
		{&l.oauth.RegisterPerHour, "register-per-hour", oauth.DefaultRegisterPerHour, "client registrations per hour from all addresses"},
	}
	for _, f := range ints {
		fs.IntVar(f.p, f.name, f.def, f.meaning+", per control-plane replica")
	}
	fs.BoolFunc("signin-api-key", "people may sign in to the authorization server with a gateway API key (default true; false: only with a configured identity provider)", func(v string) error {
		switch v {
		case "true", "1":
			l.oauth.KeySigninOff = false
		case "false", "0":
			l.oauth.KeySigninOff = true
		default:
			return fmt.Errorf("must be true or false")
		}
		return nil
	})
	fs.Float64Var(&l.catchUp, "catchup-reads-per-second", store.DefaultCatchUpPerSecond,
		"etcd reads per second, per replica, that requests with unknown credentials may cause, shared by all of them")
	return l
}

// validate reports the first non-positive limit (errors are one line).
func (l *limitFlags) validate() error {
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
