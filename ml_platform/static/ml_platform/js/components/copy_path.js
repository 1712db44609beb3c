// Copies an artifact's path (data-path) to the clipboard: <button data-component="copy-path" data-path="…">.
// The button says whether it worked for a moment; where the page may not write the clipboard (a page served
// over plain http from another host is not a secure context) it says so, and the path beside it stays
// selectable by hand.
const SHOWN_MS = 2000;

export default function mount(button) {
  const label = button.textContent;
  let timer = null;
  const say = (text) => {
    button.textContent = text;
    clearTimeout(timer);
    timer = setTimeout(() => (button.textContent = label), SHOWN_MS);
  };
  button.addEventListener("click", async () => {
    try {
      if (!navigator.clipboard) throw new Error("no clipboard here");
      await navigator.clipboard.writeText(button.dataset.path);
      button.dataset.copied = "true";
      say("Copied");
    } catch {
      button.dataset.copied = "false";
      say("Copy failed: select the path");
    }
  });
}
