// The MCP TypeScript SDK's client logging in by itself: on the gate's 401 it reads the RFC 9728
// document and the authorization server's metadata, registers (RFC 7591) and runs code + PKCE.
// The person is played by the test: this script prints {"authorize": url} and reads the
// callback's "<code> <state> <iss>" from stdin. Then it calls tools and prints
// {"add": ..., "whoami": ...}.
//
// usage: node oauth_client.mjs <mcp-url> <redirect-uri>
import { randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [url, redirectUri] = process.argv.slice(2);
const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

const stored = {};
const authProvider = {
  get redirectUrl() { return redirectUri; },
  get clientMetadata() {
    return {
      client_name: 'MCP TypeScript SDK test client',
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  },
  state() { return randomUUID(); },
  clientInformation() { return stored.client; },
  saveClientInformation(client) { stored.client = client; },
  tokens() { return stored.tokens; },
  saveTokens(tokens) { stored.tokens = tokens; },
  redirectToAuthorization(authorizationUrl) {
    console.log(JSON.stringify({ authorize: authorizationUrl.href }));
  },
  saveCodeVerifier(verifier) { stored.verifier = verifier; },
  codeVerifier() { return stored.verifier; },
};

const transport = () => new StreamableHTTPClientTransport(new URL(url), { authProvider });
const client = () => new Client({ name: 'latchkey-test', version: '1.0.0' });

let mcp = client();
const first = transport();
try {
  await mcp.connect(first);
} catch (error) {
  if (!(error instanceof UnauthorizedError)) throw error;
  const { value } = await stdin.next();
  const [code] = value.split(' ');
  await first.finishAuth(code);
  mcp = client();
  await mcp.connect(transport());
}
const added = await mcp.callTool({ name: 'add', arguments: { a: 2, b: 3 } });
const who = await mcp.callTool({ name: 'whoami', arguments: {} });
console.log(JSON.stringify({ add: added.content[0].text, whoami: who.content[0].text }));
await mcp.close();
process.exit(0);
