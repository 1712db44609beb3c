// <time data-component="local-time" datetime="…">, shown in a schedule's own zone by the server, also in the
// viewer's: "· Mon 10:00 CET your time" (the browser knows the viewer's zone; the server does not).
export default function mount(time) {
  const at = new Date(time.getAttribute("datetime"));
  if (Number.isNaN(at.getTime())) return;
  const mine = new Intl.DateTimeFormat(undefined, {
    weekday: "short",
    hour: "2-digit",
    minute: "2-digit",
    timeZoneName: "short",
  }).format(at);
  const note = document.createElement("span");
  note.className = "muted local-time";
  note.textContent = ` · ${mine} your time`;
  time.after(note);
}
