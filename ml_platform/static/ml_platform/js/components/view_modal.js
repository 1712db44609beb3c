// The view modal (training/view/_modal.html): one <dialog> per page showing a run or an experiment in tabs.
// ViewModal.open(id, {mode: "experiment" | "training_run", tab}) opens it; so does a click on any link with
// data-view-run (its href, the run's page, stays the no-JS and new-tab fallback). The URL says which run and
// tab is open (?view=<id>&tab=<name>), so a link can be shared, a reload opens the same tab, and the back
// button closes it. A tab is loaded (htmx) the first time it is shown; while the run is not terminal (or a
// deploy of its model is in flight: the header's data-settled) the open tab is asked for again every 3 s
// (less often while the page is hidden), and asking stops once it has settled. A tab's body may say what it
// was asked for in data-query (the Data insights split, the Pipeline's chosen stage): a refresh asks the same,
// and the URL carries it too (?view=<id>&tab=pipeline&stage=Trainer), so a reload opens the same stage.
// A click inside a tab (a stage, a split) wins over a refresh in flight: a refresh is sent from the panel's
// [data-poll] element (hx-sync="#view-panel-<tab>:abort"), a tab's links say hx-sync="closest .view-panel:replace",
// so htmx aborts the refresh for the click and drops a refresh asked while the click's answer is on its way.
import htmx from "htmx.org";

const REFRESH_MS = 3000;
const HIDDEN_MS = 30000; // a hidden page asks this seldom
const DEFAULT_TAB = "overview";
const TAB_ALIASES = { progress: "training" }; // renamed tabs: an older link still opens them (training/view.py)
const QUERY_KEYS = ["stage", "split"]; // what a tab's data-query may say, carried in the page's URL

let modal = null;

class Modal {
  constructor(dialog) {
    this.dialog = dialog;
    this.template = dialog.dataset.tabUrl; // …/runs/0/view/overview/
    this.runId = null;
    this.tab = DEFAULT_TAB;
    this.loaded = new Set();
    this.timer = null;
    this.opener = null;
    this.pushed = false;
    this.linked = null; // {id, tab, query} from the URL: what that tab first asks for (a deep link's stage)
    dialog.querySelector("[data-role=close]").addEventListener("click", () => dialog.close());
    dialog.addEventListener("click", (event) => {
      if (event.target === dialog) dialog.close();
    });
    dialog.addEventListener("close", () => this.closed());
    for (const button of dialog.querySelectorAll("[data-tab]")) {
      button.addEventListener("click", () => this.show(button.dataset.tab, true));
    }
    // An action of the modal (push, deploy, cancel…) answers with a toast: the tab shows its outcome.
    // The page's list behind it is asked again too (its cards show the same state).
    dialog.addEventListener("htmx:afterRequest", (event) => {
      if (event.detail.requestConfig?.verb === "get" && event.detail.xhr?.status === 404) this.gone = true;
      if (event.detail.requestConfig?.verb !== "post" || !event.detail.successful) return;
      document.body.dispatchEvent(new CustomEvent("runs-changed"));
      if (event.detail.elt?.dataset.action === "delete") dialog.close();
      else this.refresh();
    });
    // A tab's new body (a refresh, or a click on a stage or split) may say another query: the URL follows it,
    // and the next refresh is counted from now.
    dialog.addEventListener("htmx:afterSwap", (event) => {
      const panel = event.detail.target;
      if (panel?.dataset?.panel !== this.tab || !this.isOpen()) return;
      this.writeUrl(false);
      if (!event.detail.elt?.dataset?.poll) this.schedule(REFRESH_MS);
    });
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && this.isOpen()) this.schedule(0);
    });
  }

  isOpen() {
    return this.dialog.open && this.runId !== null;
  }

  url(tab) {
    return this.template.replace("/0/view/overview/", `/${this.runId}/view/${tab}/`);
  }

  open(id, { mode = "training_run", tab = DEFAULT_TAB, push = true } = {}) {
    if (this.runId !== String(id)) {
      this.runId = String(id);
      this.gone = false;
      this.loaded.clear();
      if (this.linked?.id !== this.runId) this.linked = null;
      for (const panel of this.dialog.querySelectorAll("[data-panel]")) panel.replaceChildren();
    }
    this.dialog.dataset.mode = mode;
    this.dialog.dataset.run = this.runId;
    if (!this.dialog.open) {
      this.opener = document.activeElement;
      this.dialog.showModal();
    }
    this.show(tab, push);
  }

  show(tab, push) {
    tab = TAB_ALIASES[tab] || tab;
    if (!this.dialog.querySelector(`[data-panel="${tab}"]`)) tab = DEFAULT_TAB;
    this.tab = tab;
    for (const button of this.dialog.querySelectorAll("[data-tab]")) {
      button.setAttribute("aria-selected", String(button.dataset.tab === tab));
    }
    for (const panel of this.dialog.querySelectorAll("[data-panel]")) panel.hidden = panel.dataset.panel !== tab;
    this.writeUrl(push);
    if (!this.loaded.has(tab)) this.refresh();
    else this.schedule(REFRESH_MS);
  }

  writeUrl(push) {
    const url = new URL(window.location.href);
    const already = url.searchParams.get("view") === this.runId;
    url.searchParams.set("view", this.runId);
    url.searchParams.set("tab", this.tab);
    for (const key of QUERY_KEYS) url.searchParams.delete(key);
    for (const [key, value] of new URLSearchParams(this.query(this.tab))) {
      if (QUERY_KEYS.includes(key)) url.searchParams.set(key, value);
    }
    const state = { view: this.runId, tab: this.tab };
    if (push && !already) {
      history.pushState(state, "", url);
      this.pushed = true;
    } else history.replaceState(state, "", url);
  }

  /** What the tab ``tab`` asks for: its body's data-query, else (not loaded yet) the deep link's. */
  query(tab) {
    const body = this.dialog.querySelector(`[data-panel="${tab}"] [data-tab-body]`);
    if (body) return body.dataset.query || "";
    return this.linked?.tab === tab ? this.linked.query : "";
  }

  /** Ask for the open tab (and the header, out of band); again in 3 s while the run is not terminal. */
  refresh() {
    clearTimeout(this.timer);
    const tab = this.tab;
    const panel = this.dialog.querySelector(`[data-panel="${tab}"]`);
    if (!this.isOpen() || !panel) return;
    const open = [...panel.querySelectorAll("details[open]")].map((d) => d.dataset.log || d.id).filter(Boolean);
    const query = this.query(tab);
    htmx
      .ajax("GET", query ? `${this.url(tab)}?${query}` : this.url(tab), {
        source: this.dialog.querySelector(`[data-poll="${tab}"]`),
        target: panel,
        swap: "innerHTML",
      })
      .then(() => {
        this.loaded.add(tab);
        for (const key of open) {
          panel.querySelector(`details[data-log="${key}"], details#${CSS.escape(key)}`)?.setAttribute("open", "");
        }
        this.schedule(REFRESH_MS);
      })
      .catch(() => this.schedule(HIDDEN_MS));
  }

  schedule(delay) {
    clearTimeout(this.timer);
    const header = this.dialog.querySelector("#view-modal-header");
    // Settled (finished, no deploy in flight), or gone (deleted, or no longer shared with this user).
    if (!this.isOpen() || this.gone || header?.dataset.settled === "true") {
      this.dialog.dataset.polling = "false";
      return;
    }
    this.dialog.dataset.polling = "true";
    this.timer = setTimeout(() => this.refresh(), document.hidden ? HIDDEN_MS : delay);
  }

  closed() {
    clearTimeout(this.timer);
    this.dialog.dataset.polling = "false";
    const url = new URL(window.location.href);
    if (url.searchParams.has("view")) {
      if (this.pushed) history.back();
      else {
        url.searchParams.delete("view");
        url.searchParams.delete("tab");
        for (const key of QUERY_KEYS) url.searchParams.delete(key);
        history.replaceState(null, "", url);
      }
    }
    this.pushed = false;
    this.linked = null;
    this.runId = null;
    if (this.opener?.isConnected) this.opener.focus();
    else {
      // the card was swapped by a poll while the modal was open: focus its new version's link
      const id = this.dialog.dataset.run;
      document.querySelector(`[data-view-run="${id}"][data-action=view], [data-view-run="${id}"]`)?.focus();
    }
  }

  /** The URL's ?view= and tab=, after a reload or the back and forward buttons. */
  fromUrl() {
    const params = new URLSearchParams(window.location.search);
    const id = params.get("view");
    const tab = TAB_ALIASES[params.get("tab")] || params.get("tab") || DEFAULT_TAB;
    const query = new URLSearchParams();
    for (const key of QUERY_KEYS) if (params.has(key)) query.set(key, params.get(key));
    this.linked = id ? { id, tab, query: query.toString() } : null;
    if (id) this.open(id, { tab: params.get("tab") || DEFAULT_TAB, push: false });
    else if (this.dialog.open) {
      this.pushed = false;
      this.dialog.close();
    }
  }
}

export const ViewModal = {
  open(id, options) {
    if (!modal) throw new Error("no view modal on this page");
    modal.open(id, options);
  },
};

export default function mount(dialog) {
  modal = new Modal(dialog);
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-view-run]");
    if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    const inModal = link.closest("#view-modal");
    ViewModal.open(link.dataset.viewRun, { mode: link.dataset.viewMode || "training_run", push: !inModal });
  });
  window.addEventListener("popstate", () => modal.fromUrl());
  dialog.dataset.ready = "true"; // links open the modal from now on (before, they open the run's page)
  modal.fromUrl();
}
