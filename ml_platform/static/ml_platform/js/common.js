// Small helpers shared by the modules.

/** The CSRF token Django set in its cookie; sent back as X-CSRFToken on writes. */
export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

/** The data of a {{ value|json_script:"id" }} block. */
export function jsonFrom(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`no JSON block #${id}`);
  return JSON.parse(node.textContent);
}

/** A design token's value (tokens.css), e.g. token("--series-0"). */
export function token(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

/** How many series colours tokens.css defines (.series-0 … .series-9). */
export const SERIES_COLOURS = 10;

export const formatInt = (n) => Number(n).toLocaleString("en-US");
