// Front-channel logout in a real browser (Debian's Chromium, driven by npm playwright-core): sign
// in to app A, then to app B by SSO, read the session's sid through the management API, log out
// from A (confirming), and land on A's post-logout redirect after Latch's page loaded B's
// front-channel URL in a hidden frame.
//
// env: LATCH_URL, TOKEN (management API), USER_ID, USER_EMAIL, PASSWORD, A_ID, A_CB, B_ID, B_CB, BYE
// prints one JSON report on stdout; exits 1 on a failure.
import { chromium } from 'playwright-core'

const env = (k) => {
  const v = process.env[k]
  if (!v) throw new Error(`${k} is not set`)
  return v
}
const base = env('LATCH_URL')
const report = { consoleErrors: [] }
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
})
const page = await (await browser.newContext()).newPage()
page.on('console', (m) => { if (m.type() === 'error') report.consoleErrors.push(m.text()) })
const authorize = (id, cb) => `${base}/authorize?response_type=code&client_id=${id}` +
  `&redirect_uri=${encodeURIComponent(cb)}&scope=openid&state=s&nonce=n`
try {
  await page.goto(authorize(env('A_ID'), env('A_CB')))
  await page.locator('input[name=email]').fill(env('USER_EMAIL'))
  await page.locator('input[name=password]').fill(env('PASSWORD'))
  await Promise.all([
    page.waitForURL((u) => u.href.startsWith(env('A_CB')), { timeout: 10000 }),
    page.locator('button[type=submit]').click(),
  ])
  await page.goto(authorize(env('B_ID'), env('B_CB')))
  await page.waitForURL((u) => u.href.startsWith(env('B_CB')), { timeout: 10000 })
  const sessions = await (await fetch(`${base}/api/v2/users/${env('USER_ID')}/sessions`, {
    headers: { authorization: `Bearer ${env('TOKEN')}` },
  })).json()
  report.sid = sessions.sessions[0].id
  await page.goto(`${base}/oidc/logout?client_id=${env('A_ID')}` +
    `&post_logout_redirect_uri=${encodeURIComponent(env('BYE'))}&state=bye`)
  const started = Date.now()
  await Promise.all([
    page.waitForURL((u) => u.href.startsWith(env('BYE')), { timeout: 10000 }),
    page.locator('button[type=submit]').click(),
  ])
  report.elapsedMs = Date.now() - started
  report.finalUrl = page.url()
  console.log(JSON.stringify(report))
  await browser.close()
} catch (e) {
  report.error = String(e && e.message || e)
  report.url = page.url()
  console.log(JSON.stringify(report))
  await browser.close()
  process.exit(1)
}
