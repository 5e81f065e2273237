package main_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestRunEnvMalformed: every long-running command reads its flags'
// MCPGATE_* variables through one mapping, and a malformed value stops it
// with a one-line usage error (exit 2) naming the variable, not its value.
// Before, `control` and `proxy` silently took the default drain timeout
// and data-plane limits for a malformed value.
func TestRunEnvMalformed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"control", "--etcd-endpoints", "http://127.0.0.1:9"}, "MCPGATE_DRAIN_TIMEOUT=s3cret", "mcpgate: usage: MCPGATE_DRAIN_TIMEOUT is not a valid duration\n"},
		{[]string{"proxy", "--public-url", "http://127.0.0.1:1"}, "MCPGATE_DRAIN_TIMEOUT=s3cret", "mcpgate: usage: MCPGATE_DRAIN_TIMEOUT is not a valid duration\n"},
		{[]string{"proxy", "--public-url", "http://127.0.0.1:1"}, "MCPGATE_MAX_STREAMS_PER_PRINCIPAL=s3cret", "mcpgate: usage: MCPGATE_MAX_STREAMS_PER_PRINCIPAL is not a valid number\n"},
		{[]string{"dev", "--data-dir", t.TempDir()}, "MCPGATE_MAX_STREAM_LIFETIME=s3cret", "mcpgate: usage: MCPGATE_MAX_STREAM_LIFETIME is not a valid duration\n"},
	} {
		cmd := exec.Command(bin, tc.args...)
		cmd.Env = append(os.Environ(), tc.env)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || errb.String() != tc.want {
			t.Errorf("%v %s: %v, stderr %q; want exit 2 and %q", tc.args, tc.env, err, errb.String(), tc.want)
		}
		if strings.Contains(errb.String(), "s3cret") {
			t.Errorf("%v: the value leaked into %q", tc.args, errb.String())
		}
	}
}
