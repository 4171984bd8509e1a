// A real OAuth 2.0 authorization server for the tests: oidc-provider with a
// project-owned RFC 8693 token exchange grant, token revocation (RFC 7009)
// and introspection (RFC 7662), on 127.0.0.1 only.
//
// The subject token is a toolcell issuer token: verified against toolcell's
// JWKS (a file), its issuer and its audience (this server). The exchanged
// token is opaque, for one audience, and never wider than the subject token
// or than what this server allows for that audience.
//
// Environment: PORT, TOOLCELL_JWKS (file), TOOLCELL_ISSUER, CLIENT_SECRET,
// AUDIENCE_SCOPES (JSON: audience -> scopes this server grants for it), and
// optionally AUDIENCE_LIFETIME (JSON: audience -> seconds, or "unstated"):
// a lifetime that ignores the subject token's, or an answer without
// `expires_in`, as some real servers give.
// Prints `listening <issuer>` on stdout when ready, and `issued <token>` for
// every token it issues, so tests can introspect what a tool never showed them.

import { readFileSync } from 'node:fs';
import Provider, { errors } from 'oidc-provider';
import { createLocalJWKSet, jwtVerify } from 'jose';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const jwks = createLocalJWKSet(JSON.parse(readFileSync(process.env.TOOLCELL_JWKS, 'utf8')));
const toolcellIssuer = process.env.TOOLCELL_ISSUER;
const audienceScopes = JSON.parse(process.env.AUDIENCE_SCOPES);
const audienceLifetime = JSON.parse(process.env.AUDIENCE_LIFETIME || '{}');
const allScopes = [...new Set(Object.values(audienceScopes).flat())];
const grantType = 'urn:ietf:params:oauth:grant-type:token-exchange';
const accessTokenType = 'urn:ietf:params:oauth:token-type:access_token';

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'toolcell',
    client_secret: process.env.CLIENT_SECRET,
    grant_types: [grantType],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: allScopes.join(' '),
  }],
  scopes: allScopes,
  features: {
    devInteractions: { enabled: false },
    // Exchanged tokens are ClientCredentials tokens; oidc-provider only finds
    // (introspects, revokes) those with this feature on. The client itself is
    // not allowed the client_credentials grant.
    clientCredentials: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
  },
  ttl: { ClientCredentials: 600 },
  // Who the exchanged token acts for, carried over from the subject token.
  extraTokenClaims: (ctx, token) => token.subjectClaims,
});

async function tokenExchange(ctx) {
  const { params, client } = ctx.oidc;
  if (params.subject_token_type !== accessTokenType) {
    throw new errors.InvalidRequest('subject_token_type must be an access token');
  }
  let claims;
  try {
    ({ payload: claims } = await jwtVerify(params.subject_token, jwks, {
      issuer: toolcellIssuer,
      audience: issuer,
      typ: 'at+jwt',
      algorithms: ['EdDSA'],
    }));
  } catch (error) {
    throw new errors.InvalidGrant(`subject token refused: ${error.code ?? error.message}`);
  }
  // toolcell's actor token, where it sends one: the principal the subject
  // token acts for, as toolcell's issuer vouches for it.
  if (params.actor_token) {
    let actor;
    try {
      ({ payload: actor } = await jwtVerify(params.actor_token, jwks, {
        issuer: toolcellIssuer, audience: issuer, typ: 'at+jwt', algorithms: ['EdDSA'],
      }));
    } catch (error) {
      throw new errors.InvalidGrant(`actor token refused: ${error.code ?? error.message}`);
    }
    if (params.actor_token_type !== accessTokenType || actor.sub !== claims.act?.sub) {
      throw new errors.InvalidGrant('the actor token is not the principal the subject token acts for');
    }
  }
  const audience = params.audience;
  if (!audience || !(audience in audienceScopes)) {
    throw new errors.InvalidTarget('unknown audience');
  }
  const held = new Set(String(claims.scope ?? '').split(' ').filter(Boolean));
  const requested = params.scope ? params.scope.split(' ') : [...held];
  const beyond = requested.find((scope) => !held.has(scope));
  if (beyond) {
    throw new errors.InvalidScope(`scope ${beyond} is beyond the subject token`, beyond);
  }
  // Narrower still: only what this server grants for the audience.
  const granted = requested.filter((scope) => audienceScopes[audience].includes(scope));
  const fixed = audienceLifetime[audience];
  const lifetime = typeof fixed === 'number'
    ? fixed
    : Math.max(1, Math.min(600, claims.exp - Math.floor(Date.now() / 1000)));
  const token = new provider.ClientCredentials({
    client,
    scope: granted.join(' ') || undefined,
    expiresIn: lifetime,
  });
  token.subjectClaims = { sub: claims.sub, act: claims.act };
  token.setAudience(audience);
  const value = await token.save();
  console.log(`issued ${value}`);
  ctx.body = {
    access_token: value,
    issued_token_type: accessTokenType,
    token_type: 'Bearer',
    expires_in: token.expiration,
    scope: granted.join(' '),
  };
  if (fixed === 'unstated') {
    delete ctx.body.expires_in;
  }
}

provider.registerGrantType(grantType, tokenExchange, [
  'audience', 'scope', 'subject_token', 'subject_token_type', 'requested_token_type',
  'actor_token', 'actor_token_type',
]);

provider.listen(port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
