// Opens a modal <dialog> (core/_dialog.html): <button data-component="dialog-opener" data-dialog="id">.
// The dialog closes itself: its close button is a <form method="dialog">, Escape is the browser's, and a
// click on the backdrop (outside the dialog's box) closes it here.
const watched = new WeakSet(); // dialogs whose backdrop closes them already (several buttons may open one)

export default function mount(button) {
  const dialog = document.getElementById(button.dataset.dialog);
  if (!(dialog instanceof HTMLDialogElement)) throw new Error(`no <dialog id="${button.dataset.dialog}">`);
  button.addEventListener("click", () => dialog.showModal());
  if (watched.has(dialog)) return;
  watched.add(dialog);
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close();
  });
}
