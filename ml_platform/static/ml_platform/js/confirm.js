// An action that asks first, in the page's one confirmation <dialog> (base.html):
// <button hx-post="…" data-confirm="Cancel recs #3?" data-confirm-label="Cancel the run">. htmx asks every
// request's element first ("htmx:confirm"); one with data-confirm waits for the dialog, and is sent only when
// confirmed (Escape or "Keep it" sends nothing). Loaded with app.js, so no click comes before it listens.
document.addEventListener("htmx:confirm", (event) => {
  const element = event.detail.elt;
  const question = element?.dataset?.confirm;
  if (!question) return;
  event.preventDefault();
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-dialog-text").textContent = question;
  document.getElementById("confirm-dialog-ok").textContent = element.dataset.confirmLabel || "Confirm";
  dialog.returnValue = "";
  dialog.addEventListener(
    "close",
    () => {
      if (dialog.returnValue === "ok" && element.isConnected) event.detail.issueRequest(true);
    },
    { once: true },
  );
  dialog.showModal();
});
