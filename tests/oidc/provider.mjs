// An upstream OpenID Connect provider for the sign-in tests: node oidc-provider on an ephemeral
// loopback port, with one confidential client, whose sign-ins finish at once as the account the
// test chose (POST /test/account {sub, email, email_verified, name, hd}), as if that person had
// typed their password there. Any loopback redirect URI is accepted, since the latchkey under
// test picks its port after this starts.
//
// With `interactive`, its sign-in is a page instead: an email field (#email) and a button
// (#sign-in), which signs in that address, verified, for the browser tests.
//
// usage: node provider.mjs <client_id> <client_secret> [interactive]
// prints: oidc-provider listening on <issuer>
import http from 'node:http';
import Provider from 'oidc-provider';

const [clientId, clientSecret, mode] = process.argv.slice(2);
let account = { sub: 'person-1', email: 'person@example.com', email_verified: true };

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: ['http://127.0.0.1/callback'],
  }],
  findAccount: (ctx, sub) => ({ accountId: sub, claims: () => ({ ...account, sub }) }),
  // `hd`: Google Workspace's hosted domain, for the google kind's restriction.
  claims: { openid: ['sub', 'hd'], email: ['email', 'email_verified'], profile: ['name'] },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
});
const registered = provider.Client.prototype.redirectUriAllowed;
provider.Client.prototype.redirectUriAllowed = function allowed(uri) {
  return uri.startsWith('http://127.0.0.1:') || registered.call(this, uri);
};

const oidc = provider.callback();
server.on('request', async (req, res) => {
  try {
    if (req.method === 'POST' && req.url === '/test/account') {
      let body = '';
      for await (const chunk of req) body += chunk;
      account = JSON.parse(body);
      res.writeHead(204).end();
    } else if (mode === 'interactive' && req.method === 'GET' && req.url.startsWith('/interaction/')) {
      res.writeHead(200, { 'content-type': 'text/html' }).end(`<!doctype html>
<title>Corp SSO</title><h1>Sign in to Corp SSO</h1>
<form method="post"><label>Email <input id="email" name="email" type="email"></label>
<button id="sign-in" type="submit">Sign in</button></form>`);
    } else if (req.url.startsWith('/interaction/')) {
      if (mode === 'interactive') {
        let body = '';
        for await (const chunk of req) body += chunk;
        const email = new URLSearchParams(body).get('email');
        account = { sub: `sub-${email}`, email, email_verified: true };
      }
      const { params } = await provider.interactionDetails(req, res);
      const grant = new provider.Grant({ accountId: account.sub, clientId: params.client_id });
      grant.addOIDCScope(params.scope);
      const grantId = await grant.save();
      await provider.interactionFinished(
        req,
        res,
        { login: { accountId: account.sub }, consent: { grantId } },
        { mergeWithLastSubmission: false },
      );
    } else {
      oidc(req, res);
    }
  } catch (e) {
    res.writeHead(500).end(String(e));
  }
});
console.log(`oidc-provider listening on ${issuer}`);
