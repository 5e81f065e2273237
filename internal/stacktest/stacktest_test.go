package stacktest

import (
	"net/http"
	"slices"
	"testing"
)

func TestAdmissionHeaders(t *testing.T) {
	const key = "mcpg_secretkey"
	for _, tc := range []struct {
		name string
		h    http.Header
		want []string
	}{
		{"clean", http.Header{"Authorization": {"Bearer upstream-token"}, "Accept": {"*/*"}}, nil},
		{"gateway key header", http.Header{"X-Mcpgate-Api-Key": {key}}, []string{"X-Mcpgate-Api-Key: " + key}},
		{"litellm header", http.Header{"X-Litellm-Api-Key": {"Bearer x"}}, []string{"X-Litellm-Api-Key: Bearer x"}},
		{"relay header", http.Header{"X-Mcpgate-Client-Authorization": {"Bearer y"}}, []string{"X-Mcpgate-Client-Authorization: Bearer y"}},
		{"secret in Authorization", http.Header{"Authorization": {"Bearer " + key}}, []string{"Authorization: Bearer " + key}},
		{"secret in any header, any case", http.Header{"X-Other": {"MCPG_SECRETKEY"}}, []string{"X-Other: MCPG_SECRETKEY"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := AdmissionHeaders(tc.h, key, "")
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
