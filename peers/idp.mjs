// An upstream OpenID provider for Latch's tests (npm oidc-provider), set up like an Okta org:
// issuer = its origin, one registered client (Latch), PKCE required, signed ID tokens. It also
// plays Okta's Universal Logout caller: GET /test/gtr-token signs a Global Token Revocation JWT
// with the same key that signs its ID tokens. Its end_session endpoint (`/session/end`,
// RP-initiated logout: a confirmation form, then a redirect to the registered
// post_logout_redirect_uri with `state`) takes GET only (oidc-provider serves POST there only with
// SameSite=None cookies, which need https), but every request to that path, GET query or POST
// form, is recorded as sent: GET /test/end-session-requests answers them as a JSON list of
// {method, params, status, error}.
//
// env: IDP_PORT, IDP_CLIENT_ID, IDP_CLIENT_SECRET, IDP_REDIRECT_URI, optional IDP_BACKCHANNEL_URI
// (then the IdP sends OpenID Connect Back-Channel Logout to Latch when a user signs out there),
// optional IDP_USERINFO_SIGNED=1 (then userinfo answers are signed JWTs, `application/jwt`),
// optional IDP_POST_LOGOUT_REDIRECT_URI (the client's one registered post_logout_redirect_uri)
import Provider from 'oidc-provider'
import * as jose from 'jose'
import { randomUUID } from 'node:crypto'

const env = (k) => {
  const v = process.env[k]
  if (!v) throw new Error(`${k} is not set`)
  return v
}
const port = Number(env('IDP_PORT'))
const issuer = `http://127.0.0.1:${port}`

const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true })
const jwk = { ...(await jose.exportJWK(privateKey)), kid: 'idp-key-1', alg: 'RS256', use: 'sig' }

const provider = new Provider(issuer, {
  clients: [{
    client_id: env('IDP_CLIENT_ID'),
    client_secret: env('IDP_CLIENT_SECRET'),
    redirect_uris: [env('IDP_REDIRECT_URI')],
    ...(process.env.IDP_POST_LOGOUT_REDIRECT_URI ? { post_logout_redirect_uris: [process.env.IDP_POST_LOGOUT_REDIRECT_URI] } : {}),
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    ...(process.env.IDP_BACKCHANNEL_URI ? { backchannel_logout_uri: process.env.IDP_BACKCHANNEL_URI, backchannel_logout_session_required: true } : {}),
    ...(process.env.IDP_USERINFO_SIGNED ? { userinfo_signed_response_alg: 'RS256' } : {}),
  }],
  jwks: { keys: [jwk] },
  pkce: { required: () => true },
  cookies: { keys: ['latch-test-idp-cookie-key'] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'given_name'] },
  features: { devInteractions: { enabled: true }, backchannelLogout: { enabled: true }, jwtUserinfo: { enabled: !!process.env.IDP_USERINFO_SIGNED } },
  // Latch listens on loopback in the tests: let the IdP's back-channel calls reach it (its SSRF
  // guard refuses special-use addresses).
  fetch: (url, options) => {
    delete options.dispatcher
    return globalThis.fetch(url, options)
  },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: `${id}@example.com`, email_verified: true, name: `User ${id}`, given_name: id }
      },
    }
  },
  // First-party: no consent screen.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId)
    if (grantId) return ctx.oidc.provider.Grant.find(grantId)
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId })
    grant.addOIDCScope('openid email profile')
    await grant.save()
    return grant
  },
})

// The test's Okta: a GTR token for `aud`, `sub` (the app instance id), optional `kid` override.
provider.use(async (ctx, next) => {
  if (ctx.path === '/test/gtr-token') {
    const q = ctx.query
    const now = Math.floor(Date.now() / 1000)
    ctx.body = await new jose.SignJWT({ jti: randomUUID() })
      .setProtectedHeader({ alg: 'RS256', kid: jwk.kid, typ: 'global-token-revocation+jwt' })
      .setIssuer(issuer).setSubject(String(q.sub)).setAudience(String(q.aud))
      .setIssuedAt(now).setNotBefore(now - 300).setExpirationTime(now + 300)
      .sign(privateKey)
    return
  }
  await next()
})

// Every request to the end_session endpoint, with its parameters as sent (before the provider
// checks or drops any), the status it was answered with and the provider's error, if any.
const endSessionRequests = []
provider.use(async (ctx, next) => {
  if (ctx.path === '/test/end-session-requests') {
    ctx.body = endSessionRequests
    return
  }
  if (ctx.path !== '/session/end') return next()
  const params = { ...ctx.query }
  if (ctx.method === 'POST' && ctx.is('application/x-www-form-urlencoded')) {
    const chunks = []
    for await (const chunk of ctx.req) chunks.push(chunk)
    const raw = Buffer.concat(chunks).toString()
    Object.assign(params, Object.fromEntries(new URLSearchParams(raw)))
    // The stream is read: the provider's body parser takes the text from here instead.
    ctx.req.body = raw
  }
  const record = { method: ctx.method, params, status: null, error: null }
  endSessionRequests.push(record)
  ctx.state.endSessionRecord = record
  try {
    await next()
  } finally {
    record.status = ctx.status
  }
})
provider.on('end_session.error', (ctx, err) => {
  if (ctx.state?.endSessionRecord) ctx.state.endSessionRecord.error = `${err.message}: ${err.error_description ?? ''}`
})

provider.on('backchannel.error', (ctx, err, client) => console.error(`backchannel.error: ${err.message} ${err.cause?.message ?? ''} ${err.cause?.code ?? ''}`))
provider.on('backchannel.success', (ctx, clientId) => console.error(`backchannel.success ${clientId}`))

provider.listen(port, '127.0.0.1', () => console.log(`ready ${issuer}`))
