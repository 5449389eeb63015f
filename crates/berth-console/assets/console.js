// Berth console: the little that needs JavaScript. Every page works without it; with it,
// confirmations open as a dialog instead of a page, and commands copy with one click.
"use strict";
document.documentElement.classList.add("js");

document.addEventListener("click", (event) => {
  const button = event.target.closest("button.copy");
  if (!button) return;
  const text = button.dataset.copy || "";
  const done = () => {
    const label = button.textContent;
    button.textContent = "Copied";
    button.classList.add("copied");
    setTimeout(() => { button.textContent = label; button.classList.remove("copied"); }, 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, () => selectText(button));
  } else {
    selectText(button);
  }
});

// Without clipboard access (plain HTTP on another host), select the command for Ctrl+C.
function selectText(button) {
  const code = button.parentElement.querySelector("code");
  if (!code) return;
  const range = document.createRange();
  range.selectNodeContents(code);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

let dialog = null;
function confirmDialog() {
  if (dialog) return dialog;
  dialog = document.createElement("dialog");
  dialog.className = "confirm";
  dialog.setAttribute("aria-labelledby", "confirm-title");
  dialog.innerHTML =
    '<form method="dialog"><h2 id="confirm-title">Please confirm</h2><p class="confirm-message"></p>' +
    '<div class="dialog-buttons"><button value="cancel" class="button subtle">Cancel</button>' +
    '<button value="ok" class="button primary confirm-ok">Confirm</button></div></form>';
  document.body.appendChild(dialog);
  return dialog;
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!form.dataset.confirm || form.querySelector('input[name="confirmed"]')) return;
  event.preventDefault();
  const d = confirmDialog();
  // "{name}" in the message stands for the value of the form's field of that name.
  d.querySelector(".confirm-message").textContent = form.dataset.confirm.replace(/\{(\w+)\}/g,
    (whole, name) => (form.elements[name] ? form.elements[name].value : whole));
  const submit = form.querySelector('button[type="submit"]');
  const ok = d.querySelector(".confirm-ok");
  ok.textContent = submit ? submit.textContent : "Confirm";
  ok.className = "button confirm-ok " + (submit && submit.classList.contains("danger") ? "danger" : "primary");
  d.returnValue = "";
  d.onclose = () => {
    if (d.returnValue !== "ok") return;
    const confirmed = document.createElement("input");
    confirmed.type = "hidden";
    confirmed.name = "confirmed";
    confirmed.value = "yes";
    form.appendChild(confirmed);
    form.submit();
  };
  d.showModal();
  ok.focus();
});
