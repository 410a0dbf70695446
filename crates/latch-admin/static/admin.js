// Progressive enhancement for the admin UI; every page works without it (the CSP allows only
// this file). Copy buttons, and confirmation before destructive actions.
document.addEventListener('click', (e) => {
  const copy = e.target.closest('[data-copy]');
  if (copy) {
    const input = document.getElementById(copy.dataset.copy);
    if (input) {
      input.select();
      navigator.clipboard?.writeText(input.value);
      copy.textContent = 'Copied';
      setTimeout(() => { copy.textContent = 'Copy'; }, 1500);
    }
  }
});
document.addEventListener('submit', (e) => {
  const form = e.target;
  if (form.dataset.confirm && !form.dataset.confirmed) {
    e.preventDefault();
    const dialog = document.getElementById('confirm-dialog');
    if (!dialog || typeof dialog.showModal !== 'function') {
      if (window.confirm(form.dataset.confirm)) { form.dataset.confirmed = '1'; form.submit(); }
      return;
    }
    dialog.querySelector('[data-message]').textContent = form.dataset.confirm;
    dialog.returnValue = '';
    dialog.onclose = () => {
      if (dialog.returnValue === 'yes') { form.dataset.confirmed = '1'; form.submit(); }
    };
    dialog.showModal();
  }
});
