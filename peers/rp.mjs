// A real relying party (openid-client) against a running Latch:
// discovery -> authorization code with PKCE -> sign-in form -> token -> userinfo -> refresh ->
// revoke -> refresh fails. Prints one JSON object with what it saw; exits 1 on any failure.
//
// env: LATCH_ISSUER, RP_CLIENT_ID, RP_CLIENT_SECRET, RP_REDIRECT_URI, RP_EMAIL, RP_PASSWORD
import * as client from 'openid-client'

const env = (k) => {
  const v = process.env[k]
  if (!v) throw new Error(`${k} is not set`)
  return v
}
const issuer = env('LATCH_ISSUER')
const redirect_uri = env('RP_REDIRECT_URI')

// A cookie jar for the browser part of the flow (the sign-in form).
const jar = new Map()
const remember = (res) => {
  for (const c of res.headers.getSetCookie()) {
    const [pair] = c.split(';')
    const i = pair.indexOf('=')
    const name = pair.slice(0, i), value = pair.slice(i + 1)
    if (value === '' || /max-age=0/i.test(c)) jar.delete(name)
    else jar.set(name, value)
  }
}
const cookie = () => [...jar].map(([k, v]) => `${k}=${v}`).join('; ')
async function browse(url, init = {}) {
  const res = await fetch(url, { ...init, redirect: 'manual', headers: { ...(init.headers || {}), cookie: cookie() } })
  remember(res)
  return res
}

const out = {}
try {
  const config = await client.discovery(new URL(issuer), env('RP_CLIENT_ID'), undefined,
    client.ClientSecretBasic(env('RP_CLIENT_SECRET')), { execute: [client.allowInsecureRequests] })
  out.discovered_issuer = config.serverMetadata().issuer

  const code_verifier = client.randomPKCECodeVerifier()
  const code_challenge = await client.calculatePKCECodeChallenge(code_verifier)
  const state = client.randomState()
  const nonce = client.randomNonce()
  const authUrl = client.buildAuthorizationUrl(config, {
    redirect_uri, scope: 'openid email profile offline_access', code_challenge,
    code_challenge_method: 'S256', state, nonce,
  })

  // The user signs in through Latch's form.
  const form = await browse(authUrl)
  const html = await form.text()
  const tx = /name="tx" value="([^"]+)"/.exec(html)?.[1]
  if (!tx) throw new Error(`no sign-in form (status ${form.status})`)
  const done = await browse(new URL('/login', issuer), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ tx, email: env('RP_EMAIL'), password: env('RP_PASSWORD') }),
  })
  const location = done.headers.get('location')
  if (done.status !== 302 || !location) throw new Error(`sign-in did not redirect (status ${done.status})`)

  const tokens = await client.authorizationCodeGrant(config, new URL(location), {
    pkceCodeVerifier: code_verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
  })
  const claims = tokens.claims()
  out.sub = claims.sub
  out.email = claims.email
  out.sid = claims.sid
  out.has_refresh_token = typeof tokens.refresh_token === 'string'

  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub)
  out.userinfo_email = userinfo.email

  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token)
  out.refreshed = typeof refreshed.access_token === 'string' && refreshed.refresh_token !== tokens.refresh_token
  out.refreshed_sub = refreshed.claims()?.sub

  await client.tokenRevocation(config, refreshed.refresh_token)
  try {
    await client.refreshTokenGrant(config, refreshed.refresh_token)
    out.refresh_after_revoke = 'accepted'
  } catch (e) {
    out.refresh_after_revoke = e.error || e.code || String(e)
  }
  console.log(JSON.stringify(out))
} catch (e) {
  out.failure = `${e.name}: ${e.message}${e.error ? ` (${e.error}: ${e.error_description})` : ''}`
  console.log(JSON.stringify(out))
  process.exit(1)
}
