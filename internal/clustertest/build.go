// Package clustertest runs the production topology on loopback for tests:
// a real three-member etcd cluster (the etcd server the module requires,
// built once per test run), `mcpgate control` replicas on it and
// `mcpgate proxy` data planes in front of them, each a separate process
// that tests can kill, stop and restart.
package clustertest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Binaries are the executables a test run built.
type Binaries struct {
	Etcd    string
	Mcpgate string
}

var (
	buildOnce sync.Once
	buildDir  string
	built     Binaries
	buildErr  error
)

// Build builds the etcd server (at the version go.mod requires) and
// ./cmd/mcpgate once per test binary. Call Cleanup from TestMain to remove
// them.
func Build(tb testing.TB) Binaries {
	tb.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "mcpgate-clustertest-")
		if buildErr != nil {
			return
		}
		var root string
		root, buildErr = moduleRoot()
		if buildErr != nil {
			return
		}
		built = Binaries{Etcd: filepath.Join(buildDir, "etcd"), Mcpgate: filepath.Join(buildDir, "mcpgate")}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		wg.Go(func() { errs[0] = goBuild(root, built.Etcd, "go.etcd.io/etcd/server/v3") })
		wg.Go(func() { errs[1] = goBuild(root, built.Mcpgate, "./cmd/mcpgate") })
		wg.Wait()
		for _, err := range errs {
			if err != nil && buildErr == nil {
				buildErr = err
			}
		}
	})
	if buildErr != nil {
		tb.Fatalf("build binaries: %v", buildErr)
	}
	return built
}

// Cleanup removes the built binaries.
func Cleanup() {
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the module")
	}
	return filepath.Dir(mod), nil
}

func goBuild(root, out, pkg string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, stderr.String())
	}
	return nil
}
