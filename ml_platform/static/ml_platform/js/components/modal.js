// A <dialog> a fragment brought into the page (e.g. the schedule dialog, appended by htmx): it opens itself
// as a modal, closes on a click beside it (Escape and its method="dialog" forms are the browser's), and
// leaves the page once closed, so the next one opens fresh.
export default function mount(dialog) {
  dialog.addEventListener("close", () => dialog.remove());
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close();
  });
  dialog.showModal();
}
