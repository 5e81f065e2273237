// Drives the official TypeScript MCP SDK client through an mcpgate route and
// prints one JSON summary line. Configured by environment variables:
//   MCPGATE_URL        the route URL, e.g. http://127.0.0.1:8080/echo/mcp
//   MCPGATE_KEY        the gateway API key (sent as X-MCPGate-API-Key)
//   MCPGATE_TOOL       the tool that reports progress
//   MCPGATE_TOOL_ARGS  its JSON arguments
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const url = new URL(process.env.MCPGATE_URL);
const headers = {};
if (process.env.MCPGATE_KEY) headers["X-MCPGate-API-Key"] = process.env.MCPGATE_KEY;

const out = { ok: false, events: [] };
try {
  const transport = new StreamableHTTPClientTransport(url, { requestInit: { headers } });
  const client = new Client({ name: "mcpgate-interop", version: "1.0.0" });
  await client.connect(transport);
  out.serverName = client.getServerVersion()?.name ?? "";
  out.sessionId = transport.sessionId ?? "";
  const tools = await client.listTools();
  out.tools = tools.tools.map((t) => t.name).sort();
  const result = await client.callTool(
    { name: process.env.MCPGATE_TOOL, arguments: JSON.parse(process.env.MCPGATE_TOOL_ARGS || "{}") },
    undefined,
    { onprogress: (p) => out.events.push({ kind: "progress", progress: p.progress }) },
  );
  out.events.push({ kind: "result", isError: !!result.isError });
  out.resultText = (result.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("");
  await transport.terminateSession();
  out.terminated = true;
  await client.close();
  out.ok = true;
} catch (err) {
  out.error = String(err && err.message ? err.message : err);
  out.code = err && err.code !== undefined ? err.code : null;
}
process.stdout.write(JSON.stringify(out) + "\n");
process.exit(out.ok ? 0 : 1);
