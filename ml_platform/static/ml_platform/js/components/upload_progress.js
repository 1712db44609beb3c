// A file input that uploads itself (htmx, multipart): its <progress> (data-progress="id") shows how much of
// the file was sent, and hides again when the answer came.
export default function mount(input) {
  const bar = document.getElementById(input.dataset.progress);
  input.addEventListener("htmx:xhr:progress", (event) => {
    if (!bar || !event.detail.lengthComputable) return;
    bar.hidden = false;
    bar.value = Math.round((100 * event.detail.loaded) / event.detail.total);
  });
  input.addEventListener("htmx:afterRequest", () => {
    if (bar) bar.hidden = true;
  });
}
