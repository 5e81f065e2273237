package testenv_test

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/testenv"
)

// TestHelperMissing is run by TestMissing in a child process.
func TestHelperMissing(t *testing.T) {
	if os.Getenv("TESTENV_HELPER") != "1" {
		t.Skip("helper for TestMissing")
	}
	testenv.Missing(t, "Chromium", errors.New("not installed"))
	t.Error("Missing returned")
}

// TestMissing: a missing tool skips the test, naming `bash .ci/test`;
// with MCPGATE_TEST_REQUIRE_ALL=1 (exported by .ci/test) it fails it.
func TestMissing(t *testing.T) {
	for _, tc := range []struct {
		require string
		want    string
		fails   bool
	}{
		{"", "--- SKIP: TestHelperMissing", false},
		{"1", "--- FAIL: TestHelperMissing", true},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperMissing$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTENV_HELPER=1", testenv.RequireAllEnv+"="+tc.require)
		out, err := cmd.CombinedOutput()
		if (err != nil) != tc.fails || !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), "bash .ci/test") {
			t.Errorf("%s=%q: err %v, output:\n%s\nwant %q and the README command", testenv.RequireAllEnv, tc.require, err, out, tc.want)
		}
	}
}
