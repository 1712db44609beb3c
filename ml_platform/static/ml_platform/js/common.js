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

/** A component's data: its data-json attribute, or the {{ value|json_script }} block its data-from names.
 * A fragment htmx swaps in carries it in the attribute: htmx drops every script element of a fragment (allowScriptTags
 * is off), JSON blocks included. */
export function dataOf(element) {
  return element.dataset.json ? JSON.parse(element.dataset.json) : jsonFrom(element.dataset.from);
}

/** A design token's value (tokens.css), e.g. token("--series-0"). */
export function token(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

/** How many series colours tokens.css defines (.series-0 … .series-9). */
export const SERIES_COLOURS = 10;

export const formatInt = (n) => Number(n).toLocaleString("en-US");
