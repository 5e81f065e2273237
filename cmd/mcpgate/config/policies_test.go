package config_test

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/cmd/mcpgate/config"
)

// TestParsePolicies: policies: keeps the rules' order and every field;
// no key leaves Policies nil (apply does not touch the stored list), an
// empty list is an empty, non-nil slice (apply clears it); unknown fields
// and effects are refused with the line.
func TestParsePolicies(t *testing.T) {
	f, err := config.Parse([]byte(`
policies:
  - id: z-last-by-name-first-by-order
    description: only release merges
    principals: [alice, "b*"]
    groups: [release]
    servers: [github, "gh-?"]
    tools: [merge_*]
    resources: ["file:///docs/*"]
    prompts: [release_notes]
    effect: allow
  - id: a-second
    principals: ["*"]
    servers: ["*"]
    tools: [admin_*]
    effect: deny
`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := []*configv1.Policy{
		{Id: "z-last-by-name-first-by-order", Description: "only release merges", Principals: []string{"alice", "b*"}, Groups: []string{"release"},
			Servers: []string{"github", "gh-?"}, Tools: []string{"merge_*"}, Resources: []string{"file:///docs/*"}, Prompts: []string{"release_notes"},
			Effect: configv1.PolicyEffect_POLICY_EFFECT_ALLOW},
		{Id: "a-second", Principals: []string{"*"}, Servers: []string{"*"}, Tools: []string{"admin_*"}, Effect: configv1.PolicyEffect_POLICY_EFFECT_DENY},
	}
	if len(f.Policies) != len(want) {
		t.Fatalf("policies %v", f.Policies)
	}
	for i := range want {
		if !proto.Equal(f.Policies[i], want[i]) {
			t.Errorf("policies[%d] = %v, want %v", i, f.Policies[i], want[i])
		}
	}
	if f, err := config.Parse([]byte("groups: {}\n"), env(nil)); err != nil || f.Policies != nil {
		t.Errorf("no policies key: %v %v", f.Policies, err)
	}
	if f, err := config.Parse([]byte("policies: []\n"), env(nil)); err != nil || f.Policies == nil || len(f.Policies) != 0 {
		t.Errorf("empty policies: %v %v", f.Policies, err)
	}
	for yaml, msg := range map[string]string{
		"policies:\n  - id: x\n    effect: maybe\n": `line 3: effect "maybe"`,
		"policies:\n  - id: x\n    tool: [a]\n":     `line 3: unknown field "tool" in policies`,
	} {
		_, err := config.Parse([]byte(yaml), env(nil))
		if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: %v, want %q", yaml, err, msg)
		}
	}
}
