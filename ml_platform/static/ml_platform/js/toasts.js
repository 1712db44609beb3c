// Every action's result as a toast: a page action answers with the header
// HX-Trigger: {"toast": {"level": "success" | "error", "message": "…"}}, which htmx turns into this event.
export const TOAST_SECONDS = 6;

export function showToast(message, level = "success") {
  const box = document.getElementById("toasts");
  if (!box) return;
  const toast = document.createElement("div");
  toast.className = `toast ${level}`;
  toast.setAttribute("role", level === "error" ? "alert" : "status");
  toast.textContent = message; // the API's words, which may quote the user's data: text, never markup
  box.append(toast);
  setTimeout(() => toast.remove(), TOAST_SECONDS * 1000);
}

document.addEventListener("toast", (event) => showToast(event.detail.message, event.detail.level));
