// Package interop holds the tests that drive the official TypeScript MCP
// SDK (@modelcontextprotocol/sdk from npm, installed in node_modules by
// `bash .ci/test`) through a whole gateway stack (internal/stacktest):
// client.mjs uses an API key, oauth.mjs the SDK's OAuth client provider.
// admin/ is the buf-generated TypeScript admin client (admin/gen, from
// api/proto by `go tool buf generate`, with the protoc-gen-es pinned in
// package.json) and a program using it, compiled by tsc in the test.
package interop
