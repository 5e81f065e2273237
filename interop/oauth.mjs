// Drives the official TypeScript MCP SDK client's OAuth flow through an
// mcpgate route whose upstream demands OAuth, and prints one JSON summary
// line. The SDK does discovery, dynamic client registration, PKCE and the
// token exchange; this script's OAuthClientProvider plays the browser in
// redirectToAuthorization: it follows the authorization URL, pastes the
// gateway API key into the sign-in form, approves the gateway's consent
// (CSRF field from the page) and the demo provider's consent (as an
// upstream user), and keeps the code the gateway redirects back with.
// With MCPGATE_IDP set it signs in with that identity provider instead of
// a key: it follows the sign-in page's "Sign in with <IdP>" button and
// fills in the provider's login form.
// Configured by environment variables:
//   MCPGATE_URL    the route URL, e.g. http://127.0.0.1:8080/notes/mcp
//   MCPGATE_KEY    the person's gateway API key (pasted at sign-in only)
//   MCPGATE_IDP    the display name of the identity provider to sign in with
//   MCPGATE_IDP_USER, MCPGATE_IDP_PASSWORD   the login at that provider
//   MCPGATE_USER   the upstream user to approve as at the demo provider
//   MCPGATE_TOOL   the tool to call once connected (default whoami)
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";

const url = new URL(process.env.MCPGATE_URL);
const redirectUrl = "http://127.0.0.1:53683/callback";

// A scripted browser: manual redirects and a per-host cookie store.
class Browser {
  constructor(key, user, idp) {
    this.key = key;
    this.user = user;
    this.idp = idp; // { name, user, password } or undefined
    this.cookies = new Map(); // host → Map(name → value)
    this.pages = [];
    // What the browser did on each page, in order: "signin-idp" (followed
    // the provider's button), "idp-login", "signin-key", "consent" (the
    // gateway's), "upstream-consent" (the upstream provider's).
    this.actions = [];
  }

  cookieHeader(u) {
    const jar = this.cookies.get(u.host);
    if (!jar || jar.size === 0) return undefined;
    return [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
  }

  keepCookies(u, res) {
    for (const sc of res.headers.getSetCookie()) {
      const [pair, ...attrs] = sc.split(";");
      const i = pair.indexOf("=");
      const name = pair.slice(0, i).trim();
      const value = pair.slice(i + 1).trim();
      if (!this.cookies.has(u.host)) this.cookies.set(u.host, new Map());
      const expired = attrs.some((a) => /^\s*max-age\s*=\s*(0|-)/i.test(a));
      if (expired || value === "") this.cookies.get(u.host).delete(name);
      else this.cookies.get(u.host).set(name, value);
    }
  }

  async request(method, target, form) {
    const u = new URL(target);
    const headers = {};
    const cookie = this.cookieHeader(u);
    if (cookie) headers.cookie = cookie;
    let body;
    if (form) {
      headers["content-type"] = "application/x-www-form-urlencoded";
      body = new URLSearchParams(form).toString();
    }
    const res = await fetch(u, { method, headers, body, redirect: "manual" });
    this.keepCookies(u, res);
    return { res, text: await res.text(), url: u };
  }

  // authorize walks the flow from authorizationUrl to the redirect URI.
  async authorize(authorizationUrl) {
    let method = "GET";
    let target = authorizationUrl.toString();
    let form;
    for (let step = 0; step < 20; step++) {
      if (method === "GET" && target.startsWith(redirectUrl)) return new URL(target);
      const { res, text, url: at } = await this.request(method, target, form);
      if (res.status >= 300 && res.status < 400) {
        method = "GET";
        target = new URL(res.headers.get("location"), at).toString();
        form = undefined;
        continue;
      }
      if (res.status !== 200) throw new Error(`${method} ${target}: status ${res.status}: ${text}`);
      this.pages.push({ url: target, body: text });
      if (this.idp) {
        const links = [...text.matchAll(/<a class="idp" href="([^"]*)">Sign in with ([^<]*)<\/a>/g)];
        if (links.length > 0) {
          const l = links.find((x) => unescapeHTML(x[2]) === this.idp.name);
          if (!l) throw new Error(`${target}: no "Sign in with ${this.idp.name}" button`);
          this.actions.push("signin-idp");
          method = "GET";
          target = new URL(unescapeHTML(l[1]), at).toString();
          form = undefined;
          continue;
        }
      }
      const m = /<form[^>]*method="post"[^>]*action="([^"]*)"[^>]*>([\s\S]*?)<\/form>/i.exec(text);
      if (!m) throw new Error(`${target}: no form on page`);
      form = {};
      for (const h of m[2].matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/gi)) {
        form[h[1]] = unescapeHTML(h[2]);
      }
      if (m[2].includes('name="username"') && this.idp) {
        this.actions.push("idp-login");
        form.username = this.idp.user;
        form.password = this.idp.password;
      } else if (m[2].includes('name="key"')) {
        this.actions.push("signin-key");
        form.key = this.key;
      } else if (m[2].includes('name="user"')) {
        this.actions.push("upstream-consent");
        form.user = this.user;
        form.action = "approve";
      } else {
        this.actions.push("consent");
        form.action = "approve";
      }
      method = "POST";
      target = new URL(unescapeHTML(m[1]), at).toString();
    }
    throw new Error("authorization flow did not reach the redirect URI in 20 steps");
  }
}

function unescapeHTML(s) {
  return s
    .replace(/&#43;/g, "+")
    .replace(/&#34;|&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&amp;/g, "&");
}

const idp = process.env.MCPGATE_IDP
  ? { name: process.env.MCPGATE_IDP, user: process.env.MCPGATE_IDP_USER, password: process.env.MCPGATE_IDP_PASSWORD }
  : undefined;
const browser = new Browser(process.env.MCPGATE_KEY, process.env.MCPGATE_USER || "alice", idp);
const out = { ok: false, steps: [] };

// The in-memory OAuthClientProvider the SDK drives.
const store = {};
const provider = {
  get redirectUrl() {
    return redirectUrl;
  },
  get clientMetadata() {
    return {
      client_name: "mcpgate TS interop",
      redirect_uris: [redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  },
  clientInformation: () => store.client,
  saveClientInformation: (info) => {
    out.steps.push("register");
    store.client = info;
  },
  tokens: () => store.tokens,
  saveTokens: (t) => {
    out.steps.push("token");
    store.tokens = t;
  },
  saveCodeVerifier: (v) => {
    store.verifier = v;
  },
  codeVerifier: () => store.verifier,
  redirectToAuthorization: async (authorizationUrl) => {
    out.steps.push("authorize");
    const back = await browser.authorize(authorizationUrl);
    if (back.searchParams.get("error")) throw new Error(`authorization error ${back.searchParams.get("error")}`);
    store.code = back.searchParams.get("code");
    store.iss = back.searchParams.get("iss");
  },
};

try {
  const first = new StreamableHTTPClientTransport(url, { authProvider: provider });
  try {
    await new Client({ name: "mcpgate-interop-oauth", version: "1.0.0" }).connect(first);
    throw new Error("connected without authorization");
  } catch (err) {
    if (!(err instanceof UnauthorizedError)) throw err;
    out.steps.push("401");
  }
  if (!store.code) throw new Error("no authorization code");
  await first.finishAuth(store.code);

  const transport = new StreamableHTTPClientTransport(url, { authProvider: provider });
  const client = new Client({ name: "mcpgate-interop-oauth", version: "1.0.0" });
  await client.connect(transport);
  out.steps.push("connected");
  const result = await client.callTool({ name: process.env.MCPGATE_TOOL || "whoami", arguments: {} });
  out.isError = !!result.isError;
  out.result = result.structuredContent ?? null;
  out.accessToken = store.tokens?.access_token ?? "";
  out.iss = store.iss;
  out.consentNamedClient = browser.pages.some((p) => p.body.includes("mcpgate TS interop") && p.body.includes("127.0.0.1:53683"));
  await transport.terminateSession();
  await client.close();
  out.ok = true;
} catch (err) {
  out.error = String(err && err.stack ? err.stack : err);
}
out.browserActions = browser.actions;
out.pages = browser.pages.map((p) => ({ url: p.url, body: p.body }));
process.stdout.write(JSON.stringify(out) + "\n");
process.exit(out.ok ? 0 : 1);
