package config

import (
	"context"
	"fmt"

	"go.yaml.in/yaml/v3"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1/configv1connect"
)

// rateLimitYAML is one entry of rate_limits: (docs/limits.md).
type rateLimitYAML struct {
	ID          string   `yaml:"id"`
	Principals  []string `yaml:"principals"`
	Groups      []string `yaml:"groups"`
	Servers     []string `yaml:"servers"`
	Tools       []string `yaml:"tools"`
	PerSecond   int64    `yaml:"per_second"`
	PerMinute   int64    `yaml:"per_minute"`
	PerDay      int64    `yaml:"per_day"`
	Description string   `yaml:"description"`
	line        int
}

func (l *rateLimitYAML) UnmarshalYAML(n *yaml.Node) error {
	type plain rateLimitYAML
	if err := n.Decode((*plain)(l)); err != nil {
		return err
	}
	l.line = n.Line
	return nil
}

// convertRateLimits checks what the file alone can (an id, no id twice);
// the admin API validates the rest.
func convertRateLimits(ys []rateLimitYAML) ([]*configv1.RateLimit, error) {
	seen := map[string]int{}
	var out []*configv1.RateLimit
	for _, y := range ys {
		if y.ID == "" {
			return nil, fmt.Errorf("%w: line %d: rate limit has no id", ErrInvalid, y.line)
		}
		if l, dup := seen[y.ID]; dup {
			return nil, fmt.Errorf("%w: line %d: rate limit %q already defined on line %d", ErrInvalid, y.line, y.ID, l)
		}
		seen[y.ID] = y.line
		out = append(out, &configv1.RateLimit{
			Id: y.ID, Principals: y.Principals, Groups: y.Groups, Servers: y.Servers, Tools: y.Tools,
			PerSecond: y.PerSecond, PerMinute: y.PerMinute, PerDay: y.PerDay, Description: y.Description,
		})
	}
	return out, nil
}

func applyRateLimit(ctx context.Context, c configv1connect.RateLimitServiceClient, l *configv1.RateLimit) (Outcome, error) {
	return upsert(func() (int64, error) {
		got, err := c.GetRateLimit(ctx, &configv1.GetRateLimitRequest{Id: l.GetId()})
		return got.GetRateLimit().GetRevision(), err
	}, func(expected int64) (bool, error) {
		res, err := c.PutRateLimit(ctx, &configv1.PutRateLimitRequest{RateLimit: l, ExpectedRevision: expected})
		return res.GetChanged(), err
	})
}
