// openid-client (a certified OpenID Connect relying party) signing a person in with latchkey,
// on its own: discovery, dynamic registration, code + PKCE + nonce + max_age, ID token
// validation, userinfo, and the RP-initiated logout URL. The person is played by the test: this
// script prints {"authorize": url} and reads the callback URL it was sent back to from stdin.
//
// usage: node openid_client.mjs <issuer> <redirect-uri> <post-logout-redirect-uri> <id-token-alg>
import * as client from 'openid-client';
import { createInterface } from 'node:readline';

const [issuer, redirectUri, postLogoutUri, alg] = process.argv.slice(2);
const loopback = { execute: [client.allowInsecureRequests] };

const config = await client.dynamicClientRegistration(
  new URL(issuer),
  {
    client_name: 'openid-client test RP',
    redirect_uris: [redirectUri],
    post_logout_redirect_uris: [postLogoutUri],
    token_endpoint_auth_method: 'none',
    id_token_signed_response_alg: alg,
  },
  client.None(),
  loopback,
);
const verifier = client.randomPKCECodeVerifier();
const nonce = client.randomNonce();
const state = client.randomState();
const url = client.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri,
  scope: 'openid email profile',
  code_challenge: await client.calculatePKCECodeChallenge(verifier),
  code_challenge_method: 'S256',
  nonce,
  state,
  max_age: '300',
});
console.log(JSON.stringify({ authorize: url.href }));

const lines = createInterface({ input: process.stdin });
const callback = await new Promise((resolve) => lines.once('line', resolve));
lines.close();
const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
  pkceCodeVerifier: verifier,
  expectedNonce: nonce,
  expectedState: state,
  idTokenExpected: true,
  maxAge: 300,
});
const claims = tokens.claims();
const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
const header = JSON.parse(Buffer.from(tokens.id_token.split('.')[0], 'base64url'));
const endSession = client.buildEndSessionUrl(config, {
  id_token_hint: tokens.id_token,
  post_logout_redirect_uri: postLogoutUri,
  state: 'signed-out-by-openid-client',
});
console.log(JSON.stringify({
  client_id: config.clientMetadata().client_id,
  alg: header.alg,
  claims,
  userinfo,
  end_session: endSession.href,
}));
