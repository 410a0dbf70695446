// Progressive enhancement for the admin UI; every page works without it (the CSP allows only
// this file). Copy buttons, confirmation before destructive actions, focus on a form's first
// error, and values computed from a connection's name as it is typed.
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
