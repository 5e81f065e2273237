// Drives the official TypeScript MCP SDK client through an mcpgate route and
// prints one JSON summary line. Configured by environment variables:
//   MCPGATE_URL        the route URL, e.g. http://127.0.0.1:8080/echo/mcp
//   MCPGATE_KEY        the gateway API key (sent as X-MCPGate-API-Key)
//   MCPGATE_TOOL       the tool that reports progress
//   MCPGATE_TOOL_ARGS  its JSON arguments
//   MCPGATE_ON_PROGRESS_TOOL, MCPGATE_ON_PROGRESS_ARGS (optional) a tool the
//                      client calls (once) when the first progress
//                      notification arrives, e.g. one that lets the reporting
//                      tool finish: its result then cannot precede the progress.
//   MCPGATE_DENIED_TOOL (optional) a tool the gateway refuses: called after
//                      tools/list; its error is recorded and the session
//                      must go on working.
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
  if (process.env.MCPGATE_DENIED_TOOL) {
    try {
      await client.callTool({ name: process.env.MCPGATE_DENIED_TOOL, arguments: {} });
      out.denied = { ok: true };
    } catch (err) {
      out.denied = { ok: false, error: String(err && err.message ? err.message : err), code: err?.code ?? null };
    }
  }
  let onProgressCall = null;
  const result = await client.callTool(
    { name: process.env.MCPGATE_TOOL, arguments: JSON.parse(process.env.MCPGATE_TOOL_ARGS || "{}") },
    undefined,
    {
      onprogress: (p) => {
        out.events.push({ kind: "progress", progress: p.progress });
        if (process.env.MCPGATE_ON_PROGRESS_TOOL && onProgressCall === null) {
          onProgressCall = client.callTool({
            name: process.env.MCPGATE_ON_PROGRESS_TOOL,
            arguments: JSON.parse(process.env.MCPGATE_ON_PROGRESS_ARGS || "{}"),
          });
        }
      },
    },
  );
  out.events.push({ kind: "result", isError: !!result.isError });
  if (onProgressCall !== null) await onProgressCall;
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
