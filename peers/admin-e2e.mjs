// The admin UI in a real browser (Debian's Chromium, driven by npm playwright-core): sign in as
// the admin, see every error of a refused form at once, create an Okta connection with Universal
// Logout and federated logout, see a SAML connection's SP values (its Single Logout URL too) as its name is typed, create an application, make it
// a SAML app (its certificate loaded from a file), find a user, clear their sessions, read the logs, use every main page at 390 px, sign out, and be
// refused as a user who is not an administrator. Saves a screenshot of each page.
//
// env: LATCH_URL, ADMIN_PASSWORD, USER_EMAIL (a user with a live session), PLAIN_EMAIL and
// PLAIN_PASSWORD (a user without the admin role), SP_CERT (a certificate, PEM), SHOTS_DIR
// prints one JSON report on stdout; exits 1 on the first failed step.
import { chromium } from 'playwright-core'
import { mkdirSync } from 'node:fs'

const env = (k) => {
  const v = process.env[k]
  if (!v) throw new Error(`${k} is not set`)
  return v
}
const base = env('LATCH_URL')
const shots = env('SHOTS_DIR')
mkdirSync(shots, { recursive: true })
const report = { steps: [] }

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
})
const context = await browser.newContext({ viewport: { width: 1366, height: 900 } })
const page = await context.newPage()
const consoleErrors = []
// The answers a step expects to be refusals (Chromium logs every 4xx page as a console error).
const refusals = { 'form-errors': 400, 'not-an-admin': 403 }
let current = ''
page.on('console', (m) => {
  if (m.type() !== 'error') return
  const expected = refusals[current] && m.text().includes(`status of ${refusals[current]} `)
  if (!expected) consoleErrors.push(`${current}: ${m.text()}`)
})

async function step (name, fn) {
  current = name
  try {
    const out = await fn()
    await page.screenshot({ path: `${shots}/${String(report.steps.length + 1).padStart(2, '0')}-${name}.png`, fullPage: true })
    report.steps.push({ name, ok: true, url: page.url(), ...(out || {}) })
  } catch (e) {
    try { await page.screenshot({ path: `${shots}/failed-${name}.png`, fullPage: true }) } catch {}
    report.steps.push({ name, ok: false, url: page.url(), error: String(e && e.message || e) })
    report.consoleErrors = consoleErrors
    console.log(JSON.stringify(report))
    await browser.close()
    process.exit(1)
  }
}

const expectText = async (text) => {
  await page.getByText(text, { exact: false }).first().waitFor({ timeout: 10000 })
}

// Whether what `aria-describedby` names exists and shows text, for each element given.
const describedBy = (selector) => page.$$eval(selector, (els) => els.map((el) => {
  const ids = (el.getAttribute('aria-describedby') || '').split(/\s+/).filter(Boolean)
  const texts = ids.map((id) => {
    const d = document.getElementById(id)
    if (!d) return null
    const r = d.getBoundingClientRect()
    return r.width > 0 && r.height > 0 ? d.innerText.trim() : null
  })
  return { id: el.id, ids, texts }
}))

const cardWidth = async () => (await page.locator('.card').first().boundingBox()).width

await step('sign-in', async () => {
  await page.goto(`${base}/admin`)
  // Latch's own sign-in page, reached through /authorize as the latch-admin client. The first
  // admin signs in as `admin`: the field says so, and stays a username field for autofill.
  const login = page.getByLabel('Email or username')
  const [type, autocomplete] = [await login.getAttribute('type'), await login.getAttribute('autocomplete')]
  if (type !== 'text' || autocomplete !== 'username') throw new Error(`login field: type=${type} autocomplete=${autocomplete}`)
  await login.fill('admin')
  await page.locator('#password').fill(env('ADMIN_PASSWORD'))
  await Promise.all([page.waitForURL(/\/admin\/connections/), page.locator('button[type=submit]').click()])
  await expectText('Connections')
  return { title: await page.title() }
})

await step('form-errors', async () => {
  await page.getByRole('link', { name: 'New Okta Workforce' }).click()
  // What the admin registers in Okta, before the connection exists: the redirect URI at once,
  // the name-dependent URLs with a placeholder until a name is typed, then with it.
  const redirectUri = await page.locator('#f-redirect_uri').inputValue()
  if (redirectUri !== `${base}/login/callback`) throw new Error(`redirect URI shown: ${redirectUri}`)
  const before = await page.locator('#f-backchannel_logout_url').inputValue()
  if (!before.endsWith('/login/backchannel-logout/{name}')) throw new Error(`before a name: ${before}`)
  const signOutBefore = await page.locator('#f-federated_logout_return_url').inputValue()
  if (signOutBefore !== `${base}/logout?connection={name}`) throw new Error(`sign-out redirect URI before a name: ${signOutBefore}`)
  await page.locator('#f-name').fill('acme-okta')
  const after = await page.locator('#f-backchannel_logout_url').inputValue()
  const gtr = await page.locator('#f-revocation_endpoint').inputValue()
  const signOut = await page.locator('#f-federated_logout_return_url').inputValue()
  if (after !== `${base}/login/backchannel-logout/acme-okta` ||
      gtr !== `${base}/oauth/global-token-revocation/connection/acme-okta` ||
      signOut !== `${base}/logout?connection=acme-okta`) {
    throw new Error(`as the name is typed: ${after} ${gtr} ${signOut}`)
  }
  for (const id of ['redirect_uri', 'backchannel_logout_url', 'revocation_endpoint', 'federated_logout_return_url']) {
    await page.locator(`[data-copy="f-${id}"]`).waitFor()
  }
  // Three things wrong at once (a bad domain, no client id, no secret): all shown together.
  await page.locator('#f-domain').fill('not a domain')
  await page.getByRole('button', { name: 'Create' }).click()
  await page.locator('#form-problems').waitFor()
  const errors = await page.locator('.field-error').allInnerTexts()
  if (errors.length < 3) throw new Error(`errors shown: ${JSON.stringify(errors)}`)
  for (const e of errors) {
    if (/options\.|\[\d+\]|_/.test(e)) throw new Error(`an API path in an error: ${e}`)
  }
  const tied = await describedBy('[aria-invalid="true"]')
  const invalid = tied.map((t) => t.id)
  for (const want of ['f-domain', 'f-client_id', 'f-client_secret']) {
    if (!invalid.includes(want)) throw new Error(`${want} is not marked invalid: ${invalid}`)
  }
  for (const t of tied) {
    if (!t.ids.length || t.texts.some((x) => !x)) throw new Error(`aria-describedby of ${t.id} does not resolve to visible text: ${JSON.stringify(t)}`)
  }
  const focused = await page.evaluate(() => document.activeElement && document.activeElement.id)
  if (focused !== invalid[0]) throw new Error(`focus is on ${focused}, not the first error ${invalid[0]}`)
  // The name typed is kept, and so are the URLs computed from it.
  const kept = await page.locator('#f-backchannel_logout_url').inputValue()
  if (!kept.endsWith('/acme-okta')) throw new Error(`after the refusal: ${kept}`)
  return { errors }
})

await step('okta-connection', async () => {
  await page.locator('#f-display_name').fill('Acme (Okta)')
  await page.locator('#f-domain').fill('acme.okta.com')
  await page.locator('#f-client_id').fill('0oaACME123')
  await page.locator('#f-client_secret').fill('upstream-secret-value')
  await page.locator('#f-domain_aliases').fill('acme.com')
  await page.locator('#f-global_token_revocation_enabled').check()
  await page.locator('#f-global_token_revocation_jwt_sub').fill('0oaACME123')
  await page.getByLabel('Sign out of the IdP when a SAML app signs out').check()
  await page.getByRole('button', { name: 'Create' }).click()
  await expectText('Connection created.')
  const redirectUri = await page.locator('#f-redirect_uri').inputValue()
  if (redirectUri !== `${base}/login/callback`) throw new Error(`redirect URI shown: ${redirectUri}`)
  const endpoint = await page.locator('#f-revocation_endpoint').inputValue()
  if (!endpoint.endsWith('/oauth/global-token-revocation/connection/acme-okta')) {
    throw new Error(`revocation endpoint shown: ${endpoint}`)
  }
  const ul = await page.locator('#f-global_token_revocation_enabled').isChecked()
  if (!ul) throw new Error('Universal Logout is not on after saving')
  const signOut = await page.locator('#f-federated_logout_return_url').inputValue()
  if (signOut !== `${base}/logout?connection=acme-okta`) throw new Error(`sign-out redirect URI shown: ${signOut}`)
  const federated = await page.getByLabel('Sign out of the IdP when a SAML app signs out').isChecked()
  if (!federated) throw new Error('federated logout is not on after saving')
  return { revocation_endpoint: endpoint, federated_logout_return_url: signOut }
})

await step('connections-list', async () => {
  await page.getByRole('link', { name: 'Connections' }).first().click()
  await expectText('acme-okta')
  const row = page.locator('tr', { hasText: 'acme-okta' })
  const ul = await row.locator('.tag').innerText()
  if (ul !== 'On') throw new Error(`Universal Logout column shows ${ul}`)
})

await step('saml-form', async () => {
  await page.goto(`${base}/admin/connections/new?strategy=samlp`)
  const acs = page.locator('#f-sp_acs_url')
  if (!(await acs.inputValue()).endsWith('/login/callback?connection={name}')) throw new Error(`ACS before a name: ${await acs.inputValue()}`)
  const slo = page.locator('#f-sp_single_logout_url')
  if ((await slo.inputValue()) !== `${base}/logout?connection={name}`) throw new Error(`Single Logout URL before a name: ${await slo.inputValue()}`)
  // The Single Logout settings a SAML connection has beyond the others'.
  for (const label of ['IdP logout URL (SingleLogoutService, optional)', 'Never send logout requests to the IdP', 'Sign out of the IdP when a SAML app signs out']) {
    if (!(await page.locator('#section-single-logout').getByLabel(label).isVisible())) throw new Error(`${label} is not in the Single Logout section`)
  }
  await page.locator('#f-name').fill('acme-saml')
  const values = {
    metadata: await page.locator('#f-sp_metadata_url').inputValue(),
    entity: await page.locator('#f-sp_entity_id').inputValue(),
    acs: await acs.inputValue(),
    slo: await slo.inputValue(),
  }
  if (values.metadata !== `${base}/samlp/metadata?connection=acme-saml` ||
      !values.entity.startsWith('urn:latch:') || !values.entity.endsWith(':acme-saml') ||
      values.acs !== `${base}/login/callback?connection=acme-saml` ||
      values.slo !== `${base}/logout?connection=acme-saml`) {
    throw new Error(`SP values as the name is typed: ${JSON.stringify(values)}`)
  }
  // An entity id of the admin's choosing wins.
  await page.locator('#f-entityId').fill('https://sp.example/acme')
  const chosen = await page.locator('#f-sp_entity_id').inputValue()
  if (chosen !== 'https://sp.example/acme') throw new Error(`entity id: ${chosen}`)
  return values
})

await step('application', async () => {
  await page.getByRole('link', { name: 'Applications' }).first().click()
  await page.getByRole('link', { name: 'New application' }).click()
  await page.locator('#f-name').fill('Acme Portal')
  await page.locator('#f-callbacks').fill('http://127.0.0.1:9/callback')
  await page.locator('#f-allowed_logout_urls').fill('http://127.0.0.1:9/')
  await page.locator('#f-backchannel_logout_url').fill('http://127.0.0.1:9/backchannel')
  await page.getByRole('button', { name: 'Create' }).click()
  await expectText('Application created.')
  const secret = await page.locator('#shown-secret').inputValue()
  if (secret.length < 32) throw new Error('no client secret shown')
  const lead = await page.locator('p.lead').first().innerText()
  return { client_id: lead.replace('Client ID: ', '').trim(), secret_length: secret.length }
})

await step('saml-app', async () => {
  // The application just created becomes a SAML app: its SAML settings and Latch's IdP URLs show
  // only once the switch is on; the SP certificate is loaded from a file, PEM or DER.
  const hidden = () => page.evaluate(() => ['section-saml-idp', 'section-saml-settings'].map((id) => document.getElementById(id).hidden))
  const before = await hidden()
  if (before.some((h) => !h)) throw new Error(`SAML sections shown while off: ${before}`)
  await page.getByRole('switch', { name: 'This application signs in with SAML' }).check()
  const after = await hidden()
  if (after.some((h) => h)) throw new Error(`SAML sections hidden while on: ${after}`)
  const id = (await page.locator('p.lead').first().innerText()).replace('Client ID: ', '').trim()
  const metadata = await page.locator('#f-saml_metadata_url').inputValue()
  if (metadata !== `${base}/samlp/metadata/${id}`) throw new Error(`metadata URL: ${metadata}`)
  await page.locator('[data-copy="f-saml_metadata_url"]').waitFor()
  await page.locator('#f-audience').fill('urn:acme:portal')
  const pem = env('SP_CERT').trim()
  await page.getByLabel('Or load it from a file').setInputFiles({ name: 'sp.pem', mimeType: 'application/x-pem-file', buffer: Buffer.from(pem) })
  await page.waitForFunction((want) => document.getElementById('f-signingCert').value === want, pem)
  const b64 = pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '')
  await page.getByLabel('Or load it from a file').setInputFiles({ name: 'sp.cer', mimeType: 'application/pkix-cert', buffer: Buffer.from(b64, 'base64') })
  await page.waitForFunction((want) => document.getElementById('f-signingCert').value === want, b64)
  await expectText('Loaded sp.cer.')
  await page.getByRole('button', { name: 'Save' }).click()
  await expectText('Changes saved.')
  const on = await page.getByRole('switch', { name: 'This application signs in with SAML' }).isChecked()
  if (!on || (await hidden()).some((h) => h)) throw new Error('the saved SAML app does not show its settings')
  return { client_id: id, metadata }
})

await step('user-search', async () => {
  await page.getByRole('link', { name: 'Users' }).first().click()
  await page.getByRole('searchbox').fill(env('USER_EMAIL'))
  await page.getByRole('button', { name: 'Search' }).click()
  await expectText(env('USER_EMAIL'))
})

await step('user-detail', async () => {
  await page.locator('tbody a').first().click()
  await expectText('Active sessions')
  const sessions = await page.locator('h2:has-text("Active sessions") + table tbody tr').count()
  if (sessions < 1) throw new Error('the user shows no session')
  return { sessions }
})

await step('clear-sessions', async () => {
  await page.getByLabel('Also revoke every token of this user: refresh and access tokens, offline ones included').check()
  await page.getByRole('button', { name: 'Clear user sessions' }).click()
  // The confirmation dialog opens on the safe choice.
  const dialog = page.locator('#confirm-dialog')
  await dialog.waitFor({ state: 'visible' })
  const focused = await page.evaluate(() => document.activeElement && document.activeElement.textContent.trim())
  if (focused !== 'Cancel') throw new Error(`the dialog opened with the focus on ${focused}`)
  await dialog.getByRole('button', { name: 'Yes, continue' }).click()
  await expectText('Sessions cleared and every token of this user revoked')
  await expectText('No active session.')
  // What became of the apps' notifications, not a promise: counted, with the event.
  const notice = await page.locator('.notice').innerText()
  const counts = notice.match(/Back-channel logout: (\d+) delivered, (\d+) pending/)
  if (!counts || Number(counts[1]) + Number(counts[2]) < 1) throw new Error(`notice: ${notice}`)
  const event = await page.locator('.notice a').getAttribute('href')
  if (!/^\/admin\/logs\/log_/.test(event)) throw new Error(`event link: ${event}`)
  return { notice, event }
})

await step('logs', async () => {
  await page.getByRole('link', { name: 'Logs' }).first().click()
  await expectText('Logs')
  const types = await page.locator('tbody .tag').allInnerTexts()
  for (const t of ['slo', 'sapi', 's']) {
    if (!types.includes(t)) throw new Error(`no ${t} event in the log: ${types.join(',')}`)
  }
  return { types: [...new Set(types)] }
})

await step('log-detail', async () => {
  await page.locator('tr', { hasText: 'slo' }).first().locator('a').first().click()
  await expectText('Sessions ended')
  await expectText('Back-channel logout deliveries')
  const states = await page.locator('h2:has-text("Back-channel logout deliveries") + table .tag').allInnerTexts()
  return { deliveries: states, details: (await page.locator('pre').innerText()).slice(0, 400) }
})

await step('keys', async () => {
  await page.getByRole('link', { name: 'Keys' }).first().click()
  await expectText('Signing keys')
  const rows = await page.locator('tbody tr').count()
  return { keys: rows }
})

await step('keyboard', async () => {
  // The first Tab reaches "Skip to content", shown; the next, a sidebar link with a visible ring.
  await page.goto(`${base}/admin/users`)
  await page.keyboard.press('Tab')
  const skip = await page.evaluate(() => {
    const a = document.activeElement
    const r = a.getBoundingClientRect()
    return { text: a.textContent.trim(), href: a.getAttribute('href'), visible: r.top >= 0 && r.width > 0 }
  })
  if (skip.text !== 'Skip to content' || skip.href !== '#content' || !skip.visible) throw new Error(`first Tab: ${JSON.stringify(skip)}`)
  await page.keyboard.press('Tab')
  const ring = await page.evaluate(() => {
    const a = document.activeElement
    const s = getComputedStyle(a)
    return { in_sidebar: !!a.closest('nav.side'), style: s.outlineStyle, width: parseFloat(s.outlineWidth), color: s.outlineColor }
  })
  if (!ring.in_sidebar || ring.style === 'none' || ring.width < 2) throw new Error(`sidebar focus: ${JSON.stringify(ring)}`)
  return ring
})

await step('narrow', async () => {
  // A phone's width: no page scrolls sideways (the sidebar becomes a top bar).
  await page.setViewportSize({ width: 390, height: 844 })
  const user = page.url()
  const pages = ['/admin/connections', '/admin/connections/new?strategy=okta', '/admin/connections/new?strategy=samlp',
    '/admin/applications', '/admin/applications/new', '/admin/users', '/admin/users/new', '/admin/logs', '/admin/keys']
  const wide = []
  for (const p of pages) {
    await page.goto(`${base}${p}`)
    const [scroll, inner] = await page.evaluate(() => [document.scrollingElement.scrollWidth, window.innerWidth])
    if (scroll > inner) wide.push(`${p}: ${scroll} > ${inner}`)
  }
  // And the pages with data: a user, an event.
  await page.goto(`${base}/admin/users?q=${encodeURIComponent(env('USER_EMAIL'))}`)
  await page.locator('tbody a').first().click()
  await page.waitForURL(/\/admin\/users\/.+/)
  for (const url of [page.url(), `${base}/admin/logs?type=slo`]) {
    await page.goto(url)
    const [scroll, inner] = await page.evaluate(() => [document.scrollingElement.scrollWidth, window.innerWidth])
    if (scroll > inner) wide.push(`${url}: ${scroll} > ${inner}`)
  }
  await page.locator('tbody a').first().click()
  await expectText('Back-channel logout deliveries')
  const [scroll, inner] = await page.evaluate(() => [document.scrollingElement.scrollWidth, window.innerWidth])
  if (scroll > inner) wide.push(`${page.url()}: ${scroll} > ${inner}`)
  if (wide.length) throw new Error(`horizontal scrolling at 390 px: ${wide.join('; ')}`)
  const sidebar = await page.locator('nav.side').boundingBox()
  if (sidebar.width < 380 || sidebar.height > 200) throw new Error(`the sidebar is not a top bar: ${JSON.stringify(sidebar)}`)
  await page.setViewportSize({ width: 1366, height: 900 })
  return { pages: pages.length + 3, from: user }
})

await step('signed-out', async () => {
  await page.goto(`${base}/admin/keys`)
  await Promise.all([page.waitForURL(/\/admin\/signed-out/), page.getByRole('button', { name: 'Sign out' }).click()])
  await expectText('You are signed out of Latch.')
  const width = await cardWidth()
  if (width <= 300) throw new Error(`the signed-out card is ${width} px wide`)
  return { card_width: width }
})

await step('not-an-admin', async () => {
  // A user without the admin role signs in, and is refused on a full-width card.
  await page.goto(`${base}/admin`)
  await page.getByLabel('Email or username').fill(env('PLAIN_EMAIL'))
  await page.locator('#password').fill(env('PLAIN_PASSWORD'))
  await page.locator('button[type=submit]').click()
  await expectText('Not an administrator')
  const width = await cardWidth()
  if (width <= 300) throw new Error(`the "not an administrator" card is ${width} px wide`)
  return { card_width: width }
})

report.consoleErrors = consoleErrors
console.log(JSON.stringify(report))
await browser.close()
