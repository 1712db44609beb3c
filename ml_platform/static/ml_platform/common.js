// Small helpers shared by the page modules.

/** The CSRF token Django set in its cookie; sent back as X-CSRFToken on writes. */
export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

/** fetch() for our JSON API: same-origin session, CSRF header, JSON errors raised. */
export async function api(url, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = response.status === 204 ? null : await response.json();
  if (!response.ok) {
    const details = (data && data.errors) || [];
    const text = details.map((e) => (e.field ? `${e.field}: ${e.message}` : e.message)).join("; ");
    throw new Error(text || (data && data.error) || `HTTP ${response.status}`);
  }
  return data;
}

/** Parse a {{ value|json_script:"id" }} block. */
export function jsonFrom(id) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : null;
}

/** Fill every <pre data-json-from="id"> with its JSON, pretty-printed. */
export function renderJsonBlocks() {
  for (const pre of document.querySelectorAll("pre[data-json-from]")) {
    pre.textContent = JSON.stringify(jsonFrom(pre.dataset.jsonFrom), null, 2);
  }
}

export const formatInt = (n) => Number(n).toLocaleString("en-US");
