package oauth

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"
)

// Issue 8 item 15: the client ID metadata document fetcher refuses IPv6
// forms that embed or translate an IPv4 address, and it checks the address
// it connects to (after DNS), not the URL's literal.
func TestSec15CIMDBlocksEmbeddedIPv4(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		// IPv4.
		{"8.8.8.8", true},
		{"1.1.1.1", true},
		{"127.0.0.1", false},
		{"10.0.0.1", false},
		{"172.16.0.1", false},
		{"192.168.1.1", false},
		{"169.254.169.254", false},
		{"100.64.0.1", false},
		{"0.0.0.0", false},
		{"192.0.2.1", false},
		{"198.18.0.1", false},
		{"255.255.255.255", false},
		{"224.0.0.1", false},
		// IPv6 that is global.
		{"2606:4700:4700::1111", true},
		{"2a00:1450:4001:80b::200e", true},
		// IPv4-mapped: judged by the IPv4 address.
		{"::ffff:8.8.8.8", true},
		{"::ffff:127.0.0.1", false},
		{"::ffff:7f00:1", false},
		{"::ffff:10.0.0.1", false},
		{"::ffff:169.254.169.254", false},
		// IPv4-compatible (deprecated).
		{"::7f00:1", false},
		{"::127.0.0.1", false},
		{"::a00:1", false},
		{"::8.8.8.8", false},
		// IPv4-translated (SIIT).
		{"::ffff:0:7f00:1", false},
		// NAT64.
		{"64:ff9b::7f00:1", false},
		{"64:ff9b::a9fe:a9fe", false},
		{"64:ff9b:1::7f00:1", false},
		{"64:ff9b:1:ffff::a00:1", false},
		// 6to4.
		{"2002:7f00:1::1", false},
		{"2002:a00:1::", false},
		{"2002:808:808::1", false},
		// Teredo.
		{"2001:0:4136:e378:8000:63bf:80ff:fffe", false},
		{"2001::1", false},
		// Other IPv6 special-purpose ranges.
		{"::1", false},
		{"::", false},
		{"fe80::1", false},
		{"fe80::1%eth0", false},
		{"fc00::1", false},
		{"fd12:3456::1", false},
		{"fec0::1", false},
		{"ff02::1", false},
		{"100::1", false},
		{"2001:db8::1", false},
		{"3fff::1", false},
	} {
		a, err := netip.ParseAddr(tc.addr)
		if err != nil {
			t.Fatalf("%s: %v", tc.addr, err)
		}
		if got := publicAddr(a); got != tc.ok {
			t.Errorf("publicAddr(%s) = %v, want %v", tc.addr, got, tc.ok)
		}
	}

	// The dialer checks the address it connects to: a name that resolves
	// to loopback (as a rebinding name would on its second lookup) and
	// literals of every embedding form are refused before any connection.
	var hits atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer ts.Close()
	_, port, _ := net.SplitHostPort(ts.Listener.Addr().String())
	c := safeClient()
	for _, host := range []string{"localhost", "127.0.0.1", "[::ffff:127.0.0.1]", "[::7f00:1]", "[64:ff9b::7f00:1]", "[2002:7f00:1::1]"} {
		resp, err := c.Get("http://" + host + ":" + port + "/client.json")
		if err == nil {
			resp.Body.Close()
			t.Errorf("%s: fetched, status %d", host, resp.StatusCode)
			continue
		}
		if !errors.Is(err, errBlockedAddress) {
			t.Errorf("%s: error %v, want errBlockedAddress", host, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the loopback server was reached %d times", n)
	}
}
