package clustertest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is one child process that can be killed and restarted with the
// same arguments (same ports, same data directory).
type Process struct {
	Name string
	Bin  string
	Args []string
	Env  []string
	// Log collects stdout and stderr of every run.
	Log string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func newProcess(tb testing.TB, dir, name, bin string, args, env []string) *Process {
	p := &Process{Name: name, Bin: bin, Args: args, Env: env, Log: filepath.Join(dir, name+".log")}
	tb.Cleanup(func() {
		p.Kill()
		if tb.Failed() {
			tail(tb, p)
		}
	})
	return p
}

// Start starts the process; it must not be running.
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s already running", p.Name)
	}
	f, err := os.OpenFile(p.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "=== start %s %v at %s\n", p.Name, p.Args, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.Bin, p.Args...)
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	return nil
}

// Running reports whether the process is running.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL (a crash) and waits for the process to exit.
func (p *Process) Kill() { p.signal(syscall.SIGKILL, 0) }

// Stop sends SIGTERM (a graceful stop) and waits up to wait before killing.
func (p *Process) Stop(wait time.Duration) { p.signal(syscall.SIGTERM, wait) }

func (p *Process) signal(sig syscall.Signal, wait time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	if sig != syscall.SIGKILL {
		select {
		case <-done:
			return
		case <-time.After(wait):
			_ = cmd.Process.Kill()
		}
	}
	<-done
}

// Exited returns a channel closed when the current run exits.
func (p *Process) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return p.done
}

func tail(tb testing.TB, p *Process) {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return
	}
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	tb.Logf("--- %s log (tail) ---\n%s", p.Name, bytes.TrimSpace(b))
}

// freePorts reserves n distinct loopback ports. The listeners are closed
// before returning, so a port can in principle be taken by someone else
// before use; on a test machine that is rare enough.
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	var lns []net.Listener
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// waitHTTP polls url until ok accepts the response, the process exits or
// ctx ends.
func waitHTTP(ctx context.Context, p *Process, url string, ok func(*http.Response) bool) error {
	cli := &http.Client{Timeout: time.Second}
	exited := p.Exited()
	for {
		resp, err := cli.Get(url)
		if err == nil {
			good := ok(resp)
			resp.Body.Close()
			if good {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s: %w", p.Name, url, ctx.Err())
		case <-exited:
			return fmt.Errorf("%s exited before it was ready (see %s)", p.Name, p.Log)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
