// Polling that backs off while the tab is hidden (nobody reads it): a fragment asks the server again every
// data-poll-seconds while visible, ten times less often while hidden, and at once when the tab comes back.
// <div data-component="poll" data-poll-seconds="5" hx-get="…" hx-trigger="poll" hx-swap="outerHTML">:
// a swapped-in fragment is a new element, mounted again, and the old one's timer stops.
import htmx from "htmx.org";

export const HIDDEN_SLOWDOWN = 10;

/** Call `callback` every `seconds` (times HIDDEN_SLOWDOWN while the page is hidden); returns stop(). */
export function every(seconds, callback) {
  let timer = null;
  let stopped = false;
  const schedule = () => {
    clearTimeout(timer);
    if (!stopped) timer = setTimeout(tick, seconds * 1000 * (document.hidden ? HIDDEN_SLOWDOWN : 1));
  };
  const tick = () => {
    callback();
    schedule();
  };
  const onVisibilityChange = () => (document.hidden ? schedule() : tick());
  document.addEventListener("visibilitychange", onVisibilityChange);
  schedule();
  return () => {
    stopped = true;
    clearTimeout(timer);
    document.removeEventListener("visibilitychange", onVisibilityChange);
  };
}

export default function mount(element) {
  const stop = every(Number(element.dataset.pollSeconds), () => {
    if (element.isConnected) htmx.trigger(element, "poll");
    else stop();
  });
}
