// Package interop holds the tests that drive the official TypeScript MCP
// SDK (@modelcontextprotocol/sdk from npm, installed in node_modules by
// `bash .ci/test`) through a whole gateway stack (internal/stacktest):
// client.mjs uses an API key, oauth.mjs the SDK's OAuth client provider.
package interop
