// Package testenv decides what a test does when a tool it needs outside Go
// (Chromium, Node.js and the interop npm packages) is missing: `go test
// ./...` on a bare machine skips it with a message naming the command that
// provides everything, while `bash .ci/test` (which exports RequireAllEnv=1)
// makes it mandatory, so CI never passes by skipping.
package testenv

import (
	"os"
	"testing"
)

// RequireAllEnv, set to 1, turns a missing tool into a test failure.
const RequireAllEnv = "MCPGATE_TEST_REQUIRE_ALL"

// SuiteCommand is the README's command that installs the tools' packages
// and runs the whole suite.
const SuiteCommand = "bash .ci/test"

// Missing stops tb because what is unavailable (why is the cause): a skip,
// or a failure when RequireAllEnv is 1.
func Missing(tb testing.TB, what string, why error) {
	tb.Helper()
	if os.Getenv(RequireAllEnv) == "1" {
		tb.Fatalf("%s is required (%s=1): %v; run `%s` on a machine with it", what, RequireAllEnv, why, SuiteCommand)
	}
	tb.Skipf("skipped: %s is unavailable (%v); run `%s` for the whole suite (it makes this test mandatory)", what, why, SuiteCommand)
}
