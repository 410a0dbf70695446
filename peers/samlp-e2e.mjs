// SAML Single Logout with a real SAML SP (pysaml2, peers/saml_sp.py) and an OpenID Connect app,
// in a real browser (Debian's Chromium, driven by npm playwright-core), with Latch as the SAML IdP
// and the OpenID Provider.
//
// forward (SP-initiated): sign in at the SP through Latch's password form (landing on the SP's
//   ACS page), sign in to the OIDC app by SSO (no form), then the SP's /logout: Latch's logout page
//   loads the OIDC app's front-channel URL in a hidden frame and continues to the SP's /slo with
//   a LogoutResponse.
// reverse (RP-initiated, in a fresh browser context): sign in to both again, then the OIDC app's
//   /oidc/logout with its ID token: Latch's logout page carries the SP's signed LogoutRequest in a
//   hidden frame, the SP answers with a LogoutResponse (in that frame, to Latch), and the page
//   continues to the OIDC app's post-logout redirect.
//
// The ID tokens are had by redeeming the authorization codes at Latch's token endpoint.
//
// env: LATCH_URL, SP_URL, SAML_ID (the SAML app's client_id), USER_EMAIL, PASSWORD,
//      OIDC_ID, OIDC_SECRET, OIDC_CB, BYE; CHROMIUM (optional, default /usr/bin/chromium)
// prints one JSON report on stdout; exits 1 on a failure (the report then has `error`, `step`
// and `url`).
import { chromium } from 'playwright-core'

const env = (k) => {
  const v = process.env[k]
  if (!v) throw new Error(`${k} is not set`)
  return v
}
// The SP's binding for its AuthnRequest and LogoutRequest (`redirect` or `post`); the Rust test
// gives the SAML app the same `binding` for Latch's LogoutRequests.
const binding = process.env.SP_BINDING || 'redirect'
const base = env('LATCH_URL')
const sp = env('SP_URL')
const samlId = env('SAML_ID')
const oidcId = env('OIDC_ID')
const oidcCb = env('OIDC_CB')
const bye = env('BYE')
const TIMEOUT = 10000

const report = { consoleErrors: [] }
let step = 'launch'
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
})

/// A fresh context and page whose main-frame navigations, frame loads and console errors are
/// recorded in `rec`.
async function newPage (rec) {
  const page = await (await browser.newContext()).newPage()
  rec.navigations = []
  rec.frames = []
  page.on('console', (m) => {
    // The SP has no favicon (a 404 Chromium reports); nothing else is left out.
    if (m.type() === 'error' && !(m.location().url || '').endsWith('/favicon.ico')) {
      report.consoleErrors.push(`${rec.name}: ${m.text()}`)
    }
  })
  page.on('framenavigated', (f) => {
    if (f === page.mainFrame()) rec.navigations.push(f.url())
  })
  page.on('response', (r) => {
    const req = r.request()
    if (req.frame() !== page.mainFrame() && req.resourceType() === 'document') {
      rec.frames.push({ url: r.url(), status: r.status(), method: req.method() })
    }
    // Latch's logout page: its status and CSP, for the report.
    if (req.frame() === page.mainFrame() && req.resourceType() === 'document' &&
        r.headers()['content-security-policy'] && r.url().startsWith(base) &&
        (r.url().includes('/logout'))) {
      rec.logoutPage = { url: r.url(), status: r.status(), csp: r.headers()['content-security-policy'] }
    }
  })
  page.on('requestfailed', (req) => {
    if (req.frame() !== page.mainFrame()) {
      rec.frames.push({ url: req.url(), failed: req.failure()?.errorText || 'failed', method: req.method() })
    }
  })
  return page
}

const authorize = (id, cb) => `${base}/authorize?response_type=code&client_id=${id}` +
  `&redirect_uri=${encodeURIComponent(cb)}&scope=openid&state=s&nonce=n`

function claims (jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString())
}

/// The OIDC app's back end: the code redeemed at the token endpoint (client_secret_basic).
async function redeem (code) {
  const basic = Buffer.from(`${encodeURIComponent(oidcId)}:${encodeURIComponent(env('OIDC_SECRET'))}`)
    .toString('base64')
  const res = await fetch(`${base}/oauth/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: oidcCb }),
  })
  const body = await res.json()
  if (!res.ok || !body.id_token) throw new Error(`token endpoint: ${res.status} ${JSON.stringify(body)}`)
  return body.id_token
}

/// Signs in at the SP through Latch's password form, then to the OIDC app by SSO; returns the
/// OIDC app's ID token.
async function signInToBoth (page, rec) {
  step = `${rec.name}: SP /login`
  await page.goto(`${sp}/login?binding=${binding}`)
  rec.loginFormUrl = page.url()
  await page.locator('input[name=email]').fill(env('USER_EMAIL'))
  await page.locator('input[name=password]').fill(env('PASSWORD'))
  step = `${rec.name}: password form to the SP's ACS`
  await Promise.all([
    page.waitForURL((u) => u.href === `${sp}/acs`, { timeout: TIMEOUT }),
    page.locator('button[type=submit]').click(),
  ])
  rec.acsText = (await page.locator('body').innerText()).trim()

  step = `${rec.name}: OIDC app by SSO`
  const before = rec.navigations.length
  await page.goto(authorize(oidcId, oidcCb), { waitUntil: 'commit' })
  await page.waitForURL((u) => u.href.startsWith(oidcCb), { timeout: TIMEOUT })
  // No sign-in form on the way: the only page committed after /authorize is the callback.
  rec.ssoNavigations = rec.navigations.slice(before)
  const code = new URL(page.url()).searchParams.get('code')
  if (!code) throw new Error(`no code at the OIDC callback: ${page.url()}`)
  step = `${rec.name}: redeem the code`
  const idToken = await redeem(code)
  const c = claims(idToken)
  rec.sub = c.sub
  rec.sid = c.sid
  return idToken
}

let current = null
try {
  // forward: SP-initiated SAML SLO.
  const fwd = { name: 'forward' }
  report.forward = fwd
  let page = await newPage(fwd)
  current = page
  await signInToBoth(page, fwd)
  step = 'forward: SP /logout'
  fwd.framesBeforeLogout = fwd.frames.length
  let started = Date.now()
  await page.goto(`${sp}/logout?binding=${binding}`, { waitUntil: 'commit' })
  await page.waitForURL((u) => u.href.startsWith(`${sp}/slo`), { timeout: TIMEOUT })
  await page.waitForLoadState('load')
  fwd.elapsedMs = Date.now() - started
  fwd.finalUrl = page.url()
  fwd.finalText = (await page.locator('body').innerText()).trim()
  fwd.logoutFrames = fwd.frames.slice(fwd.framesBeforeLogout)
  await page.context().close()

  // reverse: RP-initiated OpenID Connect logout, SAML LogoutRequest in a frame.
  const rev = { name: 'reverse' }
  report.reverse = rev
  page = await newPage(rev)
  current = page
  const idToken = await signInToBoth(page, rev)
  step = 'reverse: /oidc/logout'
  rev.framesBeforeLogout = rev.frames.length
  started = Date.now()
  await page.goto(`${base}/oidc/logout?id_token_hint=${idToken}` +
    `&post_logout_redirect_uri=${encodeURIComponent(bye)}&state=bye`, { waitUntil: 'commit' })
  await page.waitForURL((u) => u.href.startsWith(bye), { timeout: TIMEOUT })
  await page.waitForLoadState('load')
  rev.elapsedMs = Date.now() - started
  rev.finalUrl = page.url()
  rev.logoutFrames = rev.frames.slice(rev.framesBeforeLogout)
  await page.context().close()

  console.log(JSON.stringify(report))
  await browser.close()
} catch (e) {
  report.error = String((e && e.message) || e)
  report.step = step
  try { report.url = current && current.url() } catch { /* closed */ }
  console.log(JSON.stringify(report))
  await browser.close()
  process.exit(1)
}
