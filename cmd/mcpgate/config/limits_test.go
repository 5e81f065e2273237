package config

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
)

func TestParseRateLimits(t *testing.T) {
	f, err := Parse([]byte(`rate_limits:
  - id: writes
    principals: [alice]
    groups: [devs]
    servers: [github]
    tools: ["create_*", merge_pull_request]
    per_second: 2
    per_minute: 30
    per_day: 1000
    description: writes
`), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	want := &configv1.RateLimit{Id: "writes", Principals: []string{"alice"}, Groups: []string{"devs"}, Servers: []string{"github"},
		Tools: []string{"create_*", "merge_pull_request"}, PerSecond: 2, PerMinute: 30, PerDay: 1000, Description: "writes"}
	if len(f.RateLimits) != 1 || !proto.Equal(f.RateLimits[0], want) {
		t.Fatalf("got %v", f.RateLimits)
	}
	for _, c := range []struct{ yaml, want string }{
		{"rate_limits:\n  - per_day: 1\n", "line 2: rate limit has no id"},
		{"rate_limits:\n  - id: a\n    per_day: 1\n  - id: a\n    per_day: 2\n", `line 4: rate limit "a" already defined on line 2`},
		{"rate_limits:\n  - id: a\n    per_hour: 1\n", `line 3: unknown field "per_hour"`},
		{"rate_limits:\n  - id: a\n    per_day: lots\n", "cannot unmarshal"},
	} {
		_, err := Parse([]byte(c.yaml), func(string) (string, bool) { return "", false })
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.yaml, err, c.want)
		}
	}
}
