// Package bench measures the gateway end to end (go test -bench . ./bench/):
// tools/call round trips straight to the upstream and through a whole
// stack (data plane → control plane Authorize → upstream) in the same run,
// and AuthorizeService decisions per second.
package bench
