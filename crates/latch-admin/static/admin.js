// Progressive enhancement for the admin UI; every page works without it (the CSP allows only
// this file). Copy buttons, confirmation before destructive actions, switches that show what
// they control, certificates loaded from files, focus on a form's first error, and values
// computed from a connection's name as it is typed.
document.addEventListener('click', (e) => {
  const copy = e.target.closest('[data-copy]')
  if (copy) {
    const input = document.getElementById(copy.dataset.copy)
    if (input) {
      input.select()
      navigator.clipboard?.writeText(input.value)
      copy.textContent = 'Copied'
      setTimeout(() => { copy.textContent = 'Copy' }, 1500)
    }
  }
  // A link in the error summary: to the field, focused (a fragment only scrolls).
  const link = e.target.closest('#form-problems a[href^="#"]')
  if (link) {
    const field = document.getElementById(link.getAttribute('href').slice(1))
    if (field) {
      e.preventDefault()
      field.focus()
      field.scrollIntoView({ block: 'center' })
    }
  }
})

document.addEventListener('submit', (e) => {
  const form = e.target
  if (form.dataset.confirm && !form.dataset.confirmed) {
    e.preventDefault()
    const dialog = document.getElementById('confirm-dialog')
    if (!dialog || typeof dialog.showModal !== 'function') {
      if (window.confirm(form.dataset.confirm)) { form.dataset.confirmed = '1'; form.submit() }
      return
    }
    dialog.querySelector('[data-message]').textContent = form.dataset.confirm
    dialog.returnValue = ''
    dialog.onclose = () => {
      if (dialog.returnValue === 'yes') { form.dataset.confirmed = '1'; form.submit() }
    }
    dialog.showModal()
    // The safe choice has the focus: Enter or Space must not destroy anything.
    dialog.querySelector('button[value="no"]')?.focus()
  }
})

// A switch shows the sections it controls only while it is on (a SAML app's settings).
for (const sw of document.querySelectorAll('input[data-controls]')) {
  const sync = () => {
    for (const id of sw.dataset.controls.split(' ')) {
      const el = document.getElementById(id)
      if (el) el.hidden = !sw.checked
    }
  }
  sw.addEventListener('change', sync)
  sync()
}

// A certificate loaded from a file into its textarea: PEM as it is, DER as base64 (the API
// takes both). The file itself is never posted.
for (const box of document.querySelectorAll('[data-upload]')) {
  const input = box.querySelector('input[type=file]')
  const status = box.querySelector('[data-status]')
  const target = input && document.getElementById(input.dataset.into)
  if (!target) continue
  box.hidden = false
  input.addEventListener('change', async () => {
    const file = input.files[0]
    if (!file) return
    if (file.size > 65536) {
      status.textContent = `${file.name} is too large for a certificate.`
      return
    }
    const bytes = new Uint8Array(await file.arrayBuffer())
    const text = new TextDecoder().decode(bytes)
    target.value = text.includes('-----BEGIN') ? text.trim() : btoa(String.fromCharCode(...bytes))
    status.textContent = `Loaded ${file.name}.`
  })
}

// After a refused form: the first field in error has the focus.
document.querySelector('[aria-invalid="true"]')?.focus()

// Values the IdP needs that depend on the connection's name: `{name}` in `data-template` is the
// name as typed; `data-prefer` names a field whose value, when filled in, wins.
const computed = document.querySelectorAll('[data-template]')
if (computed.length) {
  const recompute = () => {
    const name = document.getElementById('f-name')?.value.trim()
    for (const el of computed) {
      const preferred = el.dataset.prefer && document.getElementById(el.dataset.prefer)?.value.trim()
      el.value = preferred || el.dataset.template.replaceAll('{name}', name ? encodeURIComponent(name) : '{name}')
    }
  }
  document.addEventListener('input', (e) => {
    if (e.target.id === 'f-name' || [...computed].some((el) => el.dataset.prefer === e.target.id)) recompute()
  })
  recompute()
}
