package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/cmd/mcpgate/config"
)

// cmdPolicies: `policies list | apply -f FILE | delete ID`. apply takes a
// file's policies: list (the same YAML as `mcpgate apply`) and replaces
// the stored list with it, compare-and-swap on the list's revision.
func cmdPolicies(ctx context.Context, args []string, io stdio) error {
	sub, args := subcommand(args)
	var file string
	a, pos, ctx, cancel, err := adminCommand(ctx, "policies "+sub, args, io, func(fs *flag.FlagSet) {
		if sub == "apply" {
			fs.StringVar(&file, "f", "", "configuration file (YAML) with a policies: list")
		}
	})
	if err != nil {
		return err
	}
	defer cancel()
	switch {
	case sub == "list" && len(pos) == 0:
		res, err := a.policies.ListPolicies(ctx, &configv1.ListPoliciesRequest{})
		if err != nil {
			return err
		}
		a.out.policies(res)
		return nil
	case sub == "apply" && len(pos) == 0 && file != "":
		f, err := config.ParseFile(file)
		if err != nil {
			return err
		}
		if f.Policies == nil {
			return fmt.Errorf("%w: %s has no policies: list", errUsage, file)
		}
		res, err := config.Apply(ctx, config.Clients{Policies: a.policies}, &config.File{Policies: f.Policies}, time.Now())
		a.out.applyResults(res)
		return err
	case sub == "delete" && len(pos) == 1:
		if _, err := a.policies.DeletePolicy(ctx, &configv1.DeletePolicyRequest{Id: pos[0]}); err != nil {
			return fmt.Errorf("policy %q: %w", pos[0], err)
		}
		a.out.done("policy %s deleted", pos[0])
		return nil
	}
	return fmt.Errorf("%w: mcpgate policies list | apply -f FILE | delete ID", errUsage)
}

// cmdExplain: `explain --principal P --server S [--tool T | --resource URI
// | --prompt N | --method M]` prints the decision the principal would get
// and every step behind it; nothing is called, consumed or written.
func cmdExplain(ctx context.Context, args []string, io stdio) error {
	var req configv1.ExplainRequest
	a, pos, ctx, cancel, err := adminCommand(ctx, "explain", args, io, func(fs *flag.FlagSet) {
		fs.StringVar(&req.Principal, "principal", "", "principal to explain for")
		fs.StringVar(&req.Server, "server", "", "server (route) name")
		fs.StringVar(&req.Tool, "tool", "", "tool of a tools/call")
		fs.StringVar(&req.Resource, "resource", "", "URI of a resources/read")
		fs.StringVar(&req.Prompt, "prompt", "", "prompt of a prompts/get")
		fs.StringVar(&req.Method, "method", "", "JSON-RPC method (default from --tool, --resource or --prompt)")
	})
	if err != nil {
		return err
	}
	defer cancel()
	if len(pos) != 0 || req.Principal == "" || req.Server == "" {
		return fmt.Errorf("%w: mcpgate explain --principal P --server S [--tool T | --resource URI | --prompt N | --method M]", errUsage)
	}
	res, err := a.explain.Explain(ctx, &req)
	if err != nil {
		return err
	}
	a.out.explained(res)
	return nil
}

func (p *printer) policies(res *configv1.ListPoliciesResponse) {
	if p.json {
		p.message(res)
		return
	}
	var rows [][]string
	for _, r := range res.GetPolicies() {
		rows = append(rows, []string{r.GetId(), lower(r.GetEffect(), "POLICY_EFFECT_"), list(r.GetPrincipals()), list(r.GetGroups()),
			list(r.GetServers()), list(r.GetTools()), list(r.GetResources()), list(r.GetPrompts())})
	}
	p.table("ID\tEFFECT\tPRINCIPALS\tGROUPS\tSERVERS\tTOOLS\tRESOURCES\tPROMPTS", rows)
}

// explained prints an explanation: the decision, its reason, the rule
// behind a deny, then one line per step.
func (p *printer) explained(res *configv1.ExplainResponse) {
	if p.json {
		p.message(res)
		return
	}
	fmt.Fprintf(p.w, "decision: %s\nreason: %s\n", res.GetDecision(), res.GetReason())
	if res.GetRuleId() != "" {
		fmt.Fprintf(p.w, "rule: %s\n", res.GetRuleId())
	}
	fmt.Fprintln(p.w, "steps:")
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	for _, s := range res.GetSteps() {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.GetKind(), s.GetSubject(), oneLine(strings.TrimSpace(s.GetDetail())))
	}
	_ = tw.Flush()
}
