// The admin UI in a real browser (Debian's Chromium, driven by npm playwright-core): sign in as
// the admin, create an Okta connection with Universal Logout, create an application, find a
// user, clear their sessions, read the logs. Saves a screenshot of each page.
//
// env: LATCH_URL, ADMIN_PASSWORD, USER_EMAIL (a user with a live session), SHOTS_DIR
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
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()) })

async function step (name, fn) {
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

await step('sign-in', async () => {
  await page.goto(`${base}/admin`)
  // Latch's own sign-in page, reached through /authorize as the latch-admin client.
  await page.locator('#email').fill('admin')
  await page.locator('#password').fill(env('ADMIN_PASSWORD'))
  await Promise.all([page.waitForURL(/\/admin\/connections/), page.locator('button[type=submit]').click()])
  await expectText('Connections')
  return { title: await page.title() }
})

await step('okta-connection', async () => {
  await page.getByRole('link', { name: 'New Okta Workforce' }).click()
  await page.locator('#f-name').fill('acme-okta')
  await page.locator('#f-display_name').fill('Acme (Okta)')
  await page.locator('#f-domain').fill('acme.okta.com')
  await page.locator('#f-client_id').fill('0oaACME123')
  await page.locator('#f-client_secret').fill('upstream-secret-value')
  await page.locator('#f-domain_aliases').fill('acme.com')
  await page.locator('#f-global_token_revocation_enabled').check()
  await page.locator('#f-global_token_revocation_jwt_sub').fill('0oaACME123')
  await page.getByRole('button', { name: 'Create' }).click()
  await expectText('Connection created.')
  const endpoint = await page.locator('#f-revocation_endpoint').inputValue()
  if (!endpoint.endsWith('/oauth/global-token-revocation/connection/acme-okta')) {
    throw new Error(`revocation endpoint shown: ${endpoint}`)
  }
  const ul = await page.locator('#f-global_token_revocation_enabled').isChecked()
  if (!ul) throw new Error('Universal Logout is not on after saving')
  return { revocation_endpoint: endpoint }
})

await step('connections-list', async () => {
  await page.getByRole('link', { name: 'Connections' }).first().click()
  await expectText('acme-okta')
  const row = page.locator('tr', { hasText: 'acme-okta' })
  const ul = await row.locator('.tag').innerText()
  if (ul !== 'On') throw new Error(`Universal Logout column shows ${ul}`)
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
  await page.getByLabel('Also revoke refresh tokens and notify apps').check()
  await page.getByRole('button', { name: 'Clear user sessions' }).click()
  // The confirmation dialog.
  const dialog = page.locator('#confirm-dialog')
  await dialog.waitFor({ state: 'visible' })
  await dialog.getByRole('button', { name: 'Yes, continue' }).click()
  await expectText('Sessions cleared, refresh tokens revoked, apps notified.')
  await expectText('No active session.')
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

report.consoleErrors = consoleErrors
console.log(JSON.stringify(report))
await browser.close()
