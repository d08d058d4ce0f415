// A real OpenID Connect provider for custodian's integration tests: `oidc-provider` issuing JWT
// access tokens through the client_credentials grant. Never for production: its keys live in
// memory, its clients come from the environment and it serves plain HTTP on loopback.
//
// Usage: node server.mjs [--port N] [--exit-with-stdin]   (or OIDC_PORT=N; 0/absent: any free port)
// Prints one line `listening http://127.0.0.1:<port>` on stdout once it serves; that URL is
// the issuer.
//
// Clients come from CUSTODIAN_TEST_OIDC_CLIENTS, a JSON array of
//   { "client_id", "client_secret", "tenant", "roles": [..], "amr": [..]?, "ttl": secs?,
//     "alg": "RS256" | "ES256" | "EdDSA"? }
// Each token a client gets carries `custodian_tenant` = tenant, `custodian_roles` = roles and,
// when given, `amr`. The audience is the `resource` the client asks for (RFC 8707), by
// default OIDC_AUDIENCE (default `urn:custodian`).
//
// Key rotation: SIGHUP or `POST /test/rotate` generates new RS256, ES256 and EdDSA keys with
// new kids and swaps in a provider that publishes only those: oidc-provider's keystore is
// fixed when a Provider is constructed, so rotation builds a new one on the same listener.
//
// `GET /test/forge?kind=...&client_id=...` returns tokens a real provider would never issue, for
// the verifier's negative tests: `none` (alg none), `hs256-public-key` (HS256 keyed with the
// RSA public key's PEM, the classic key-confusion attack), `wrong-issuer` (validly signed, iss
// of no configured issuer), `unknown-kid` (signed by a key the JWKS does not publish).

import * as crypto from 'node:crypto';
import * as http from 'node:http';

import * as jose from 'jose';
import Provider from 'oidc-provider';

const argPort = (() => {
  const i = process.argv.indexOf('--port');
  return i >= 0 ? process.argv[i + 1] : undefined;
})();
const port = Number(argPort ?? process.env.OIDC_PORT ?? 0);
const defaultAudience = process.env.OIDC_AUDIENCE ?? 'urn:custodian';
const clients = JSON.parse(process.env.CUSTODIAN_TEST_OIDC_CLIENTS ?? '[]');

let generation = 0;
let keys; // { jwks: private JWKs for the provider, rsaPublicPem }
let provider;
let handler;

async function generateKeys() {
  generation += 1;
  const jwks = [];
  let rsaPublicPem;
  for (const alg of ['RS256', 'ES256', 'EdDSA']) {
    const { privateKey, publicKey } = await jose.generateKeyPair(alg, { extractable: true });
    const jwk = await jose.exportJWK(privateKey);
    jwk.kid = `${alg.toLowerCase()}-${generation}-${crypto.randomBytes(4).toString('hex')}`;
    jwk.alg = alg;
    jwk.use = 'sig';
    jwks.push(jwk);
    if (alg === 'RS256') {
      rsaPublicPem = await jose.exportSPKI(publicKey);
    }
  }
  return { jwks, rsaPublicPem };
}

function clientById(id) {
  return clients.find((c) => c.client_id === id);
}

function makeProvider(issuer) {
  const p = new Provider(issuer, {
    clients: clients.map((c) => ({
      client_id: c.client_id,
      client_secret: c.client_secret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
    })),
    jwks: { keys: keys.jwks },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => defaultAudience,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resource, client) => {
          const c = clientById(client.clientId) ?? {};
          return {
            scope: '',
            audience: resource,
            accessTokenTTL: c.ttl ?? 600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: c.alg ?? 'RS256' } },
          };
        },
      },
    },
    extraTokenClaims: async (_ctx, token) => {
      const c = clientById(token.clientId);
      if (!c) return undefined;
      const claims = { custodian_tenant: c.tenant, custodian_roles: c.roles ?? [] };
      if (c.amr) claims.amr = c.amr;
      return claims;
    },
  });
  p.on('server_error', (_ctx, err) => console.error('oidc-provider server_error:', err));
  return p;
}

function b64url(data) {
  return Buffer.from(typeof data === 'string' ? data : JSON.stringify(data)).toString('base64url');
}

function forgedClaims(issuer, clientId) {
  const c = clientById(clientId) ?? clients[0] ?? {};
  const now = Math.floor(Date.now() / 1000);
  return {
    iss: issuer,
    sub: c.client_id ?? 'forged',
    aud: defaultAudience,
    iat: now,
    exp: now + 600,
    client_id: c.client_id ?? 'forged',
    custodian_tenant: c.tenant,
    custodian_roles: c.roles ?? [],
  };
}

async function forge(issuer, kind, clientId) {
  const claims = forgedClaims(issuer, clientId);
  const rsa = keys.jwks.find((k) => k.alg === 'RS256');
  switch (kind) {
    case 'none':
      return `${b64url({ alg: 'none', typ: 'at+jwt', kid: rsa.kid })}.${b64url(claims)}.`;
    case 'hs256-public-key': {
      const input = `${b64url({ alg: 'HS256', typ: 'at+jwt', kid: rsa.kid })}.${b64url(claims)}`;
      const mac = crypto.createHmac('sha256', keys.rsaPublicPem).update(input).digest('base64url');
      return `${input}.${mac}`;
    }
    case 'wrong-issuer': {
      const key = await jose.importJWK(rsa, 'RS256');
      return new jose.SignJWT({ ...claims, iss: 'https://idp.invalid' })
        .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: rsa.kid })
        .sign(key);
    }
    case 'unknown-kid': {
      const { privateKey } = await jose.generateKeyPair('RS256');
      return new jose.SignJWT(claims)
        .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: `stranger-${crypto.randomBytes(4).toString('hex')}` })
        .sign(privateKey);
    }
    default:
      return undefined;
  }
}

async function rotate(issuer) {
  keys = await generateKeys();
  provider = makeProvider(issuer);
  handler = provider.callback();
  console.error(`oidc test provider: rotated to key generation ${generation}`);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname === '/test/rotate' && req.method === 'POST') {
    rotate(provider.issuer).then(
      () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ generation, kids: keys.jwks.map((k) => k.kid) }));
      },
      (e) => {
        res.writeHead(500);
        res.end(String(e));
      },
    );
    return;
  }
  if (url.pathname === '/test/forge' && req.method === 'GET') {
    forge(provider.issuer, url.searchParams.get('kind'), url.searchParams.get('client_id')).then(
      (token) => {
        res.writeHead(token ? 200 : 400, { 'content-type': 'text/plain' });
        res.end(token ?? 'unknown kind');
      },
      (e) => {
        res.writeHead(500);
        res.end(String(e));
      },
    );
    return;
  }
  handler(req, res);
});

server.listen(port, '127.0.0.1', async () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  keys = await generateKeys();
  provider = makeProvider(issuer);
  handler = provider.callback();
  process.on('SIGHUP', () => {
    rotate(issuer).catch((e) => console.error('rotation failed:', e));
  });
  process.stdout.write(`listening ${issuer}\n`);
});

// With --exit-with-stdin the test harness that started us closes our stdin when it is done (or
// dies): never outlive it.
if (process.argv.includes('--exit-with-stdin')) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}
process.on('SIGTERM', () => process.exit(0));
