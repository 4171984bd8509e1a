// The authorization server MCP clients get tokens from in the tests of
// `toolcell serve --http` as an OAuth resource server: oidc-provider on
// 127.0.0.1 only, with
//
// - resource indicators (RFC 8707): a token is for the resource the client
//   names (toolcell's, from its RFC 9728 metadata), as a JWT access token
//   (RFC 9068) signed with this server's key, or opaque for `opaque-agent`
//   (toolcell introspects those, RFC 7662, as client `toolcell`);
// - client credentials for agents acting for themselves;
// - authorization code + PKCE through oidc-provider's development login
//   (any user name, no password) for a person signing in at `portal`;
// - a project-owned RFC 8693 token exchange: an agent presents a user's
//   token as the subject and its own as the actor, and gets a token for
//   the user with itself as `act`.
//
// Environment: PORT; KEYS_FILE (the signing keys, a private JWKS, made if
// missing); ROTATE=add|replace (a new key first, with or without the old);
// ALG (RS256 by default); CLIENT_SECRET (every confidential client's).
// Prints `listening <issuer>` when ready.

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import Provider, { errors } from 'oidc-provider';
import { createLocalJWKSet, exportJWK, generateKeyPair, jwtVerify } from 'jose';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const alg = process.env.ALG || 'RS256';
const secret = process.env.CLIENT_SECRET;
const keysFile = process.env.KEYS_FILE;
const toolScopes = ['tools:call', 'tools:github'];
const grantType = 'urn:ietf:params:oauth:grant-type:token-exchange';
const accessTokenType = 'urn:ietf:params:oauth:token-type:access_token';

async function newKey() {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  return { ...(await exportJWK(privateKey)), kid: randomUUID(), alg, use: 'sig' };
}

let keys = existsSync(keysFile) ? JSON.parse(readFileSync(keysFile, 'utf8')).keys : [];
if (keys.length === 0 || process.env.ROTATE) {
  const fresh = await newKey();
  // The first key of the algorithm is the one that signs.
  keys = process.env.ROTATE === 'replace' || keys.length === 0 ? [fresh] : [fresh, ...keys];
  writeFileSync(keysFile, JSON.stringify({ keys }));
}

const confidential = (clientId, scope, grants) => ({
  client_id: clientId,
  client_secret: secret,
  grant_types: grants,
  redirect_uris: [],
  response_types: [],
  token_endpoint_auth_method: 'client_secret_basic',
  ...(scope ? { scope } : {}),
});

const provider = new Provider(issuer, {
  jwks: { keys },
  clients: [
    confidential('research-agent', toolScopes.join(' '), ['client_credentials', grantType]),
    confidential('reader-agent', 'tools:call', ['client_credentials']),
    confidential('opaque-agent', toolScopes.join(' '), ['client_credentials']),
    // Its tokens live one second, for the expiry tests.
    confidential('brief-agent', 'tools:call', ['client_credentials']),
    // toolcell itself: it only introspects.
    confidential('toolcell', '', []),
    {
      client_id: 'portal',
      client_secret: secret,
      grant_types: ['authorization_code'],
      redirect_uris: ['http://127.0.0.1/callback'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: `openid ${toolScopes.join(' ')}`,
    },
  ],
  scopes: ['openid', ...toolScopes],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx, client, oneOf) => oneOf ?? undefined,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource, client) => {
        if (!/^http:\/\/127\.0\.0\.1:\d+\/mcp$/.test(resource)) {
          throw new errors.InvalidTarget('only a toolcell on loopback is a resource here');
        }
        return {
          scope: toolScopes.join(' '),
          audience: resource,
          accessTokenTTL: client?.clientId === 'brief-agent' ? 1 : 300, // ttl below as well
          accessTokenFormat: client?.clientId === 'opaque-agent' ? 'opaque' : 'jwt',
          jwt: { sign: { alg } },
        };
      },
    },
  },
  formats: {
    customizers: {
      // A token from the exchange is the user's, with the agent as actor.
      jwt: (ctx, token, jwt) => {
        if (token.delegation) {
          jwt.payload.sub = token.delegation.sub;
          jwt.payload.act = token.delegation.act;
        }
      },
    },
  },
  ttl: {
    ClientCredentials: (ctx, token, client) => (client.clientId === 'brief-agent' ? 1 : 300),
    AccessToken: 300,
  },
});

const ownKeys = createLocalJWKSet({
  keys: keys.map(({ d, p, q, dp, dq, qi, ...pub }) => pub),
});

async function ownToken(value, what) {
  try {
    const { payload } = await jwtVerify(value, ownKeys, { issuer, typ: 'at+jwt' });
    return payload;
  } catch (error) {
    throw new errors.InvalidGrant(`${what} refused: ${error.code ?? error.message}`);
  }
}

async function tokenExchange(ctx) {
  const { params, client } = ctx.oidc;
  if (params.subject_token_type !== accessTokenType || params.actor_token_type !== accessTokenType) {
    throw new errors.InvalidRequest('subject and actor tokens must be access tokens');
  }
  const subject = await ownToken(params.subject_token, 'subject token');
  const actor = await ownToken(params.actor_token, 'actor token');
  if (subject.sub === subject.client_id) {
    throw new errors.InvalidGrant('the subject token is a client\'s own, not a user\'s');
  }
  if (actor.sub !== client.clientId) {
    throw new errors.InvalidGrant('the actor token is not the requesting client\'s own');
  }
  const resource = params.resource;
  const info = provider.ResourceServer && resource
    ? new provider.ResourceServer(resource, {
      scope: toolScopes.join(' '), audience: resource, accessTokenTTL: 300, accessTokenFormat: 'jwt', jwt: { sign: { alg } },
    })
    : null;
  if (!info || !/^http:\/\/127\.0\.0\.1:\d+\/mcp$/.test(resource)) {
    throw new errors.InvalidTarget('a toolcell resource is required');
  }
  const held = new Set(String(subject.scope ?? '').split(' ').filter(Boolean));
  const allowed = new Set(client.scope.split(' '));
  const requested = params.scope ? params.scope.split(' ') : [...held];
  const beyond = requested.find((scope) => !held.has(scope) || !allowed.has(scope));
  if (beyond) {
    throw new errors.InvalidScope(`scope ${beyond} is beyond the subject token or the client`, beyond);
  }
  const token = new provider.ClientCredentials({ client, scope: requested.join(' ') || undefined });
  token.resourceServer = info;
  token.delegation = {
    sub: subject.sub,
    act: actor.act ? { sub: client.clientId, act: actor.act } : { sub: client.clientId },
  };
  const value = await token.save();
  ctx.body = {
    access_token: value,
    issued_token_type: accessTokenType,
    token_type: 'Bearer',
    expires_in: token.expiration,
    scope: token.scope,
  };
}

provider.registerGrantType(grantType, tokenExchange, [
  'resource', 'scope', 'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type',
]);

provider.listen(port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
