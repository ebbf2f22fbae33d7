// An upstream OpenID Connect provider for the sign-in tests: node oidc-provider on an ephemeral
// loopback port, with one confidential client, whose sign-ins finish at once as the account the
// test chose (POST /test/account {sub, email, email_verified, name, hd}), as if that person had
// typed their password there. Any loopback redirect URI is accepted, since the latchkey under
// test picks its port after this starts.
//
// usage: node provider.mjs <client_id> <client_secret>
// prints: oidc-provider listening on <issuer>
import http from 'node:http';
import Provider from 'oidc-provider';

const [clientId, clientSecret] = process.argv.slice(2);
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
    } else if (req.url.startsWith('/interaction/')) {
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
