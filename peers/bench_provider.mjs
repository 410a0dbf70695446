// The reference provider of `cargo xtask bench --peer` (crates/latch-server/benches/peer.rs):
// npm oidc-provider with its default in-memory adapter, configured like Latch's bench client:
// RS256 signing (a fresh RSA 2048 key per start), Latch's default token lifetimes (ID token 10 h,
// access token 24 h, refresh token 30 days), one confidential client (client_secret_post) with
// the authorization_code, refresh_token and client_credentials grants, and resource indicators so
// that client_credentials with `resource=<API>` answers an RS256 JWT access token.
//
// Refresh tokens: oidc-provider has no non-interactive way to obtain them, so the bench asks
// `POST /bench/mint?n=N` (served on 127.0.0.1 only, like everything here), which stores a Grant
// (openid offline_access email profile) and N RefreshToken entities for the fixed account and
// answers their values, one per line. oidc-provider's rotation policy is left at its default:
// it does not rotate a confidential client's refresh tokens (until 70% of their lifetime).
//
// usage: node bench_provider.mjs PORT; prints `ready <issuer>` once it listens.
import Provider from 'oidc-provider'
import { generateKeyPairSync } from 'node:crypto'

const port = Number(process.argv[2])
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node bench_provider.mjs PORT')
  process.exit(2)
}
const issuer = `http://127.0.0.1:${port}`
const CLIENT_ID = 'bench-client'
const CLIENT_SECRET = 'bench-client-secret-0123456789abcdef0123456789'
const API = 'https://api.bench.example/'
const API_SCOPE = 'api:read'
const ACCOUNT = 'bench-user'
const SCOPE = 'openid offline_access email profile'

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'bench-rs256', alg: 'RS256', use: 'sig' }

const provider = new Provider(issuer, {
  clients: [{
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    redirect_uris: ['http://127.0.0.1:9/cb'],
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post',
    id_token_signed_response_alg: 'RS256',
    scope: `${SCOPE} ${API_SCOPE}`,
  }],
  jwks: { keys: [jwk] },
  cookies: { keys: ['latch-bench-peer-cookie-key'] },
  // The ID token carries the account's claims for its scopes, as Latch's does.
  conformIdTokenClaims: false,
  scopes: ['openid', 'offline_access', 'email', 'profile', API_SCOPE],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  // Latch's client defaults (latch_core::model::TokenLifetimes).
  ttl: {
    AccessToken: 86_400,
    ClientCredentials: 86_400,
    IdToken: 36_000,
    RefreshToken: 2_592_000,
    Grant: 2_592_000,
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => false,
      getResourceServerInfo: (ctx, resource) => {
        if (resource !== API) throw new Provider.errors.InvalidTarget()
        return {
          scope: API_SCOPE,
          audience: API,
          accessTokenTTL: 86_400,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }
      },
    },
  },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: `${id}@example.com`, email_verified: true, name: 'Bench User' }
      },
    }
  },
})

// POST /bench/mint?n=N: one Grant and N refresh tokens for the fixed account, one value a line.
provider.use(async (ctx, next) => {
  if (ctx.path !== '/bench/mint') return next()
  if (ctx.method !== 'POST') {
    ctx.status = 405
    return
  }
  const n = Number(ctx.query.n)
  if (!Number.isInteger(n) || n < 1 || n > 100_000) {
    ctx.status = 400
    ctx.body = 'n must be 1 to 100000'
    return
  }
  const client = await provider.Client.find(CLIENT_ID)
  const grant = new provider.Grant({ clientId: CLIENT_ID, accountId: ACCOUNT })
  grant.addOIDCScope(SCOPE)
  const grantId = await grant.save()
  const authTime = Math.floor(Date.now() / 1000)
  const values = []
  for (let i = 0; i < n; i += 1) {
    const rt = new provider.RefreshToken({
      client,
      accountId: ACCOUNT,
      grantId,
      scope: SCOPE,
      gty: 'authorization_code',
      authTime,
    })
    values.push(await rt.save())
  }
  ctx.type = 'text/plain'
  ctx.body = `${values.join('\n')}\n`
})

provider.on('server_error', (ctx, err) => console.error(`bench_provider: server_error: ${err.stack}`))

provider.listen(port, '127.0.0.1', () => console.log(`ready ${issuer}`))
