// Package api holds the protobuf sources (proto/) and the generated Go (gen/);
// the same generation writes the TypeScript admin client to interop/admin/gen.
package api

// go generate runs in this directory; buf runs from the repository root,
// where buf.gen.yaml's paths (and its npm-installed protoc-gen-es, after
// `npm ci` in interop/) resolve.
//go:generate sh -c "cd .. && go tool buf format -w && go tool buf lint && go tool buf generate"
