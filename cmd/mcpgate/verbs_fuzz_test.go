package main

import (
	"bytes"
	"strings"
	"testing"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
)

// FuzzVerbInput checks the verbs' input parsing: an enum flag accepts
// exactly the CLI spellings of the proto values (and prints back what it
// accepted), a list flag yields trimmed non-empty items, and a secret read
// from stdin loses at most its one trailing newline, is never empty and
// never appears in an error.
func FuzzVerbInput(f *testing.F) {
	f.Add("bearer_token", "a,b", []byte("s3cret\n"))
	f.Add("BEARER_TOKEN", " a , ,b,", []byte("\r\n"))
	f.Add("unspecified", "*", []byte("line1\nline2\r\n\n"))
	f.Add("", "", []byte(""))
	saved := stdin
	f.Cleanup(func() { stdin = saved })
	f.Fuzz(func(t *testing.T, enumText, listText string, secret []byte) {
		var at configv1.AuthType
		err := enumVar(&at).Set(enumText)
		var v int32
		valid := false
		for name, n := range configv1.AuthType_value {
			if n != 0 && strings.ToLower(strings.TrimPrefix(name, "AUTH_TYPE_")) == enumText {
				v, valid = n, true
			}
		}
		if (err == nil) != valid {
			t.Fatalf("Set(%q): err %v, want valid=%v", enumText, err, valid)
		}
		if err == nil && (int32(at) != v || enumVar(&at).String() != enumText) {
			t.Fatalf("Set(%q) gave %v, prints %q", enumText, at, enumVar(&at).String())
		}
		if err != nil && at != 0 {
			t.Fatalf("refused Set(%q) changed the value to %v", enumText, at)
		}

		var items []string
		_ = listFlag{&items}.Set(listText)
		for _, it := range items {
			if it == "" || it != strings.TrimSpace(it) || strings.Contains(it, ",") {
				t.Fatalf("list %q gave item %q", listText, it)
			}
		}
		if len(items) > 0 && !strings.Contains(listText, items[0]) {
			t.Fatalf("list %q gave %q", listText, items)
		}

		stdin = bytes.NewReader(secret)
		got, err := secretFile("auth-value-file", "-")
		if err != nil {
			if len(secret) >= 16 && strings.Contains(err.Error(), string(secret)) {
				t.Fatalf("error %q shows the secret", err)
			}
			if s := string(secret); s != "" && s != "\n" && s != "\r\n" && len(secret) <= maxSecretFile {
				t.Fatalf("secret of %d bytes refused: %v", len(secret), err)
			}
			return
		}
		if got == "" || len(got) > maxSecretFile {
			t.Fatalf("secret %q accepted as %q", secret, got)
		}
		if s := string(secret); s != got && s != got+"\n" && s != got+"\r\n" {
			t.Fatalf("secret %q read as %q", secret, got)
		}
	})
}
