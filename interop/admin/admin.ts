// The buf-generated TypeScript admin client (gen/, from api/proto by
// `go tool buf generate`) against a running gateway's admin API, over the
// Connect protocol with @connectrpc/connect-node. It lists the servers,
// creates a principal granted MCPGATE_SERVERS, creates two keys for it and
// revokes the second, then prints one JSON summary line. Configured by
// environment variables:
//   MCPGATE_CONTROL_PLANE  the admin API's base URL, e.g. http://127.0.0.1:8081
//   MCPGATE_ADMIN_KEY      an admin principal's key (sent as Authorization: Bearer)
//   MCPGATE_PRINCIPAL      the principal to create
//   MCPGATE_SERVERS        comma-separated servers to grant it
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  KeyService,
  PrincipalKind,
  PrincipalService,
  Role,
  ServerService,
} from "./gen/mcpgate/config/v1/config_pb.js";

interface Output {
  ok: boolean;
  error?: string;
  code?: string;
  servers?: string[];
  principal?: { name: string; uid: string; servers: string[]; revision: string };
  key?: { id: string; principal: string; prefix: string; created: string; value: string };
  revoked?: { id: string; value: string; revoked: boolean };
  listed?: { id: string; revoked: boolean }[];
}

function env(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

const adminKey = env("MCPGATE_ADMIN_KEY");
const bearer: Interceptor = (next) => (req) => {
  req.header.set("Authorization", `Bearer ${adminKey}`);
  return next(req);
};
const transport = createConnectTransport({
  baseUrl: env("MCPGATE_CONTROL_PLANE"),
  httpVersion: "1.1",
  interceptors: [bearer],
});
const servers = createClient(ServerService, transport);
const principals = createClient(PrincipalService, transport);
const keys = createClient(KeyService, transport);

const out: Output = { ok: false };
try {
  const list = await servers.listServers({});
  out.servers = list.servers.map((s) => s.name).sort();

  const name = env("MCPGATE_PRINCIPAL");
  const put = await principals.putPrincipal({
    principal: {
      name,
      kind: PrincipalKind.SERVICE_ACCOUNT,
      role: Role.MEMBER,
      servers: env("MCPGATE_SERVERS").split(","),
    },
    expectedRevision: 0n, // create, never replace
  });
  const p = put.principal!;
  out.principal = { name: p.name, uid: p.uid, servers: p.servers, revision: p.revision.toString() };

  const created = await keys.createKey({ principal: name, name: "ts-admin" });
  const k = created.apiKey!;
  out.key = {
    id: k.id,
    principal: k.principal,
    prefix: k.displayPrefix,
    created: k.createTime ? timestampDate(k.createTime).toISOString() : "",
    value: created.key,
  };

  const doomed = await keys.createKey({ principal: name, name: "ts-admin-revoked" });
  const revoked = await keys.revokeKey({ id: doomed.apiKey!.id });
  out.revoked = { id: revoked.apiKey!.id, value: doomed.key, revoked: revoked.apiKey!.revoked };

  const listed = await keys.listKeys({ principal: name });
  out.listed = listed.keys.map((x) => ({ id: x.id, revoked: x.revoked }));
  out.ok = true;
} catch (err) {
  const ce = ConnectError.from(err);
  out.error = ce.rawMessage;
  out.code = Code[ce.code];
}
process.stdout.write(JSON.stringify(out) + "\n");
process.exit(out.ok ? 0 : 1);
