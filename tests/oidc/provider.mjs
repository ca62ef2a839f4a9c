// A real OpenID provider for the portal's SSO tests: the npm `oidc-provider`
// (OpenID Certified), started by tests/oidc/conftest.py on 127.0.0.1.
//
//   node provider.mjs <port>
//
// Clients are registered by the tests through Dynamic Client Registration
// (POST /reg), one per test organisation. Accounts are whatever login name is
// typed on the development login form (devInteractions); a test may describe
// an account first (POST /__test/accounts {login, email, email_verified, groups})
// so that its ID token carries that email and those groups. PKCE is required,
// and claims go into the ID token (conformIdTokenClaims: false), as a company's
// provider set up for the portal would do.
//
// It prints "READY <issuer>" on standard output once it listens.

import http from 'node:http';
import { createHash } from 'node:crypto';

import Provider from 'oidc-provider';

const port = Number(process.argv[2] || 0);
const issuer = `http://127.0.0.1:${port}`;
const accounts = new Map();

function describe(login) {
  const known = accounts.get(login);
  const email = known?.email ?? (login.includes('@') ? login : `${login}@example.invalid`);
  return {
    sub: known?.sub ?? createHash('sha256').update(`${issuer}|${login}`).digest('hex').slice(0, 24),
    email: email.toLowerCase(),
    email_verified: known?.email_verified ?? true,
    name: known?.name ?? login,
    groups: known?.groups ?? [],
  };
}

const configuration = {
  clients: [],
  features: {
    devInteractions: { enabled: true },
    registration: { enabled: true },
    // Only what the portal uses; no introspection, revocation or sessions to end.
  },
  pkce: { required: () => true },
  conformIdTokenClaims: false,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
  clientDefaults: {
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
  },
  ttl: { AuthorizationCode: 60, IdToken: 300, AccessToken: 300, Interaction: 600, Session: 600, Grant: 600 },
  async findAccount(ctx, id) {
    const account = describe(id);
    return {
      accountId: id,
      async claims() {
        return account;
      },
    };
  },
  // Quiet: no "renderError" pages with stack traces for expected refusals.
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = `<!DOCTYPE html><title>Provider error</title><h1>${out.error}</h1><p>${out.error_description ?? ''}</p>`;
  },
};

const provider = new Provider(issuer, configuration);
provider.proxy = false;

// Test-only: describe an account before it signs in.
provider.use(async (ctx, next) => {
  if (ctx.path === '/__test/accounts' && ctx.method === 'POST') {
    const chunks = [];
    for await (const chunk of ctx.req) chunks.push(chunk);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
    if (!body.login) {
      ctx.status = 400;
      ctx.body = { error: 'login is required' };
      return;
    }
    accounts.set(body.login, body);
    ctx.status = 204;
    return;
  }
  await next();
});

// Expected refusals (a replayed code, a bad secret) are part of the tests.
provider.on('server_error', (ctx, err) => console.error('server_error', err));

const server = http.createServer(provider.callback());
server.listen(port, '127.0.0.1', () => {
  console.log(`READY ${issuer}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
