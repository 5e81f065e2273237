package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"

	"connectrpc.com/connect"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
)

const limitsUsage = "mcpgate limits list | get ID | delete ID | status --principal P | set ID [--principals a,b] [--groups a,b] [--servers a,b] [--tools 'glob,glob'] [--per-second N] [--per-minute N] [--per-day N] [--description D]"

// cmdLimits manages rate limits (docs/limits.md) and shows their usage.
// `set` creates a limit or replaces it whole (read its revision, write
// expecting it), like apply.
func cmdLimits(ctx context.Context, args []string, io stdio) error {
	sub, args := subcommand(args)
	var principal string
	l := &configv1.RateLimit{}
	a, pos, ctx, cancel, err := adminCommand(ctx, "limits "+sub, args, io, func(fs *flag.FlagSet) {
		switch sub {
		case "status":
			fs.StringVar(&principal, "principal", "", "the principal whose limits to show")
		case "set":
			fs.Var(listFlag{&l.Principals}, "principals", "principals it applies to, comma-separated")
			fs.Var(listFlag{&l.Groups}, "groups", "groups whose members it applies to (each counted alone), comma-separated")
			fs.Var(listFlag{&l.Servers}, "servers", "servers it counts (or *), comma-separated; none: every server")
			fs.Var(listFlag{&l.Tools}, "tools", "tool name globs (tools/call only), comma-separated; none: every request")
			fs.Int64Var(&l.PerSecond, "per-second", 0, "calls per UTC second")
			fs.Int64Var(&l.PerMinute, "per-minute", 0, "calls per UTC minute")
			fs.Int64Var(&l.PerDay, "per-day", 0, "calls per UTC day (quota)")
			fs.StringVar(&l.Description, "description", "", "description")
		}
	})
	if err != nil {
		return err
	}
	defer cancel()
	switch {
	case sub == "list" && len(pos) == 0:
		res, err := a.limits.ListRateLimits(ctx, &configv1.ListRateLimitsRequest{})
		if err != nil {
			return err
		}
		a.out.rateLimits(res.GetRateLimits())
		return nil
	case sub == "get" && len(pos) == 1:
		res, err := a.limits.GetRateLimit(ctx, &configv1.GetRateLimitRequest{Id: pos[0]})
		if err != nil {
			return fmt.Errorf("rate limit %q: %w", pos[0], err)
		}
		a.out.rateLimit(res.GetRateLimit())
		return nil
	case sub == "delete" && len(pos) == 1:
		if _, err := a.limits.DeleteRateLimit(ctx, &configv1.DeleteRateLimitRequest{Id: pos[0]}); err != nil {
			return fmt.Errorf("rate limit %q: %w", pos[0], err)
		}
		a.out.done("rate limit %s deleted", pos[0])
		return nil
	case sub == "set" && len(pos) == 1:
		l.Id = pos[0]
		var expected int64
		cur, err := a.limits.GetRateLimit(ctx, &configv1.GetRateLimitRequest{Id: l.Id})
		switch {
		case err == nil:
			expected = cur.GetRateLimit().GetRevision()
		case connect.CodeOf(err) != connect.CodeNotFound:
			return fmt.Errorf("rate limit %q: %w", l.Id, err)
		}
		res, err := a.limits.PutRateLimit(ctx, &configv1.PutRateLimitRequest{RateLimit: l, ExpectedRevision: expected})
		if err != nil {
			return fmt.Errorf("rate limit %q: %w", l.Id, err)
		}
		if a.out.json {
			a.out.message(res.GetRateLimit())
			return nil
		}
		what := "created"
		switch {
		case expected != 0 && res.GetChanged():
			what = "changed"
		case expected != 0:
			what = "unchanged"
		}
		a.out.done("rate limit %s %s", l.Id, what)
		return nil
	case sub == "status" && len(pos) == 0 && principal != "":
		res, err := a.limits.GetRateLimitUsage(ctx, &configv1.GetRateLimitUsageRequest{Principal: principal})
		if err != nil {
			return fmt.Errorf("principal %q: %w", principal, err)
		}
		a.out.rateLimitUsage(principal, res)
		return nil
	}
	return fmt.Errorf("%w: %s", errUsage, limitsUsage)
}

func perWindow(v int64) string {
	if v == 0 {
		return "-"
	}
	return strconv.FormatInt(v, 10)
}

func (p *printer) rateLimits(ls []*configv1.RateLimit) {
	if p.json {
		p.message(&configv1.ListRateLimitsResponse{RateLimits: ls})
		return
	}
	var rows [][]string
	for _, l := range ls {
		rows = append(rows, []string{l.GetId(), list(l.GetPrincipals()), list(l.GetGroups()), list(l.GetServers()), list(l.GetTools()),
			perWindow(l.GetPerSecond()), perWindow(l.GetPerMinute()), perWindow(l.GetPerDay())})
	}
	p.table("ID\tPRINCIPALS\tGROUPS\tSERVERS\tTOOLS\tPER_SECOND\tPER_MINUTE\tPER_DAY", rows)
}

func (p *printer) rateLimit(l *configv1.RateLimit) {
	if p.json {
		p.message(l)
		return
	}
	p.table("ID\t"+l.GetId(), [][]string{
		{"principals", list(l.GetPrincipals())},
		{"groups", list(l.GetGroups())},
		{"servers", list(l.GetServers())},
		{"tools", list(l.GetTools())},
		{"per_second", perWindow(l.GetPerSecond())},
		{"per_minute", perWindow(l.GetPerMinute())},
		{"per_day", perWindow(l.GetPerDay())},
		{"description", orDash(l.GetDescription())},
		{"revision", fmt.Sprint(l.GetRevision())},
	})
}

// rateLimitUsage prints every limit that applies to the principal, one
// row per limit × server × window, with the current window's usage.
func (p *printer) rateLimitUsage(principal string, res *configv1.GetRateLimitUsageResponse) {
	if p.json {
		p.message(res)
		return
	}
	if len(res.GetUsage()) == 0 {
		fmt.Fprintf(p.w, "no rate limit applies to principal %s\n", principal)
		return
	}
	var rows [][]string
	for _, u := range res.GetUsage() {
		rows = append(rows, []string{u.GetLimitId(), u.GetServer(), u.GetWindow(), fmt.Sprint(u.GetLimit()),
			fmt.Sprint(u.GetUsed()), fmt.Sprint(u.GetRemaining()), fmt.Sprintf("%ds", u.GetResetSeconds())})
	}
	p.table("LIMIT\tSERVER\tWINDOW\tMAX\tUSED\tREMAINING\tRESETS_IN", rows)
}
