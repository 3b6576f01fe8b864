"use strict";
(async () => {
  const { api, el, time, duration, bytes, stateBadge, showError } = Gatehouse;
  const me = await Gatehouse.frame("records");
  const canWatch = me.role !== "user", canTerminate = me.role === "admin";
  const online = document.getElementById("online");
  const history = document.getElementById("history");
  const tabs = { online: document.getElementById("tab-online"), history: document.getElementById("tab-history") };

  function show(which) {
    online.hidden = which !== "online";
    history.hidden = which !== "history";
    tabs.online.classList.toggle("active", which === "online");
    tabs.history.classList.toggle("active", which === "history");
    if (location.hash !== "#" + which) window.history.replaceState(null, "", "#" + which);
    if (which === "history") loadHistory();
  }
  tabs.online.addEventListener("click", () => show("online"));
  tabs.history.addEventListener("click", () => show("history"));

  // ---- online sessions: refreshed every 2 s, durations tick every second
  let onlineRows = [];
  async function loadOnline() {
    try {
      const page = await api("/api/v1/sessions?state=online&per_page=500");
      onlineRows = page.sessions;
      renderOnline();
    } catch (error) { showError(online, error); }
  }
  function renderOnline() {
    if (onlineRows.length === 0) { online.replaceChildren(el("div", { className: "empty", id: "online-empty" }, "No session is online.")); return; }
    const head = el("tr", {}, ...["ID", "User", "Asset", "Account", "Protocol", "From", "Started", "Duration", "Bytes in / out", "Watchers", ""].map((h) => el("th", {}, h)));
    const rows = onlineRows.map((s) => {
      const actions = el("td", {});
      // Only sessions with a screen, a terminal or a desktop, can be watched (an SFTP session has none).
      if (canWatch && s.watchers) actions.append(el("button", { className: "monitor", onclick: () => { location.href = `/sessions/${s.id}#live`; } }, "Monitor"), " ");
      if (canTerminate) actions.append(el("button", { className: "danger terminate", onclick: () => terminate(s) }, "Terminate"));
      return el("tr", { dataset: { id: s.id } },
        el("td", {}, el("a", { href: `/sessions/${s.id}` }, s.short_id)), el("td", {}, s.user), el("td", {}, s.asset),
        el("td", {}, s.account), el("td", {}, s.protocol), el("td", {}, s.remote_address), el("td", {}, time(s.started)),
        el("td", { className: "ticking", dataset: { started: s.started } }, duration((Date.now() - Date.parse(s.started)) / 1000)),
        el("td", {}, `${bytes(s.bytes_in)} / ${bytes(s.bytes_out)}`), el("td", {}, (s.watchers || []).join(", ")), actions);
    });
    online.replaceChildren(el("table", { className: "grid", id: "online-table" }, el("thead", {}, head), el("tbody", {}, ...rows)));
  }
  async function terminate(s) {
    if (!confirm(`Terminate session ${s.short_id} of ${s.user} on ${s.asset}? The user is disconnected at once.`)) return;
    try { await api(`/api/v1/sessions/${s.id}/terminate`, { method: "POST" }); await loadOnline(); }
    catch (error) { alert("Cannot terminate: " + error.message); }
  }
  setInterval(() => document.querySelectorAll("td.ticking").forEach((td) => {
    td.textContent = duration((Date.now() - Date.parse(td.dataset.started)) / 1000);
  }), 1000);
  setInterval(() => { if (!online.hidden && !document.hidden) loadOnline(); }, 2000);

  // ---- historical sessions: filters, sorting, pages
  const form = document.getElementById("filters");
  let page = 1, sort = "started", order = "desc";
  const perPage = 25;
  form.addEventListener("submit", (e) => { e.preventDefault(); page = 1; loadHistory(); });
  form.addEventListener("reset", () => setTimeout(() => { page = 1; loadHistory(); }, 0));
  async function loadHistory() {
    const params = new URLSearchParams({ page, per_page: perPage, sort, order });
    for (const [k, v] of new FormData(form)) if (v) params.set(k, k === "until" ? nextDay(v) : v);
    if (!params.get("state")) params.set("state", "finished");
    const table = document.getElementById("history-table");
    try {
      const answer = await api("/api/v1/sessions?" + params);
      renderHistory(table, answer);
    } catch (error) { showError(table, error); }
  }
  function nextDay(date) { const d = new Date(date + "T00:00:00"); d.setDate(d.getDate() + 1); return d.toISOString(); }
  function renderHistory(table, answer) {
    const columns = [["ID"], ["User", "user"], ["Asset", "asset"], ["Account"], ["Protocol"], ["From"], ["Started", "started"], ["Ended", "ended"], ["Duration", "duration"], ["State"]];
    const head = el("tr", {}, ...columns.map(([label, key]) => {
      if (!key) return el("th", {}, label);
      return el("th", { className: "sortable" + (sort === key ? " sorted" + (order === "asc" ? " asc" : "") : ""), onclick: () => {
        order = sort === key && order === "desc" ? "asc" : "desc"; sort = key; page = 1; loadHistory();
      } }, label);
    }));
    const rows = answer.sessions.map((s) => el("tr", { className: "clickable", dataset: { id: s.id }, onclick: (e) => { if (e.target.tagName !== "A") location.href = `/sessions/${s.id}`; } },
      el("td", {}, el("a", { href: `/sessions/${s.id}`, className: "serial" }, s.short_id)), el("td", {}, s.user), el("td", {}, s.asset),
      el("td", {}, s.account), el("td", {}, s.protocol), el("td", {}, s.remote_address), el("td", {}, time(s.started)),
      el("td", {}, time(s.ended)), el("td", {}, duration(s.duration_seconds)), el("td", {}, stateBadge(s.state))));
    table.replaceChildren(answer.sessions.length
      ? el("table", { className: "grid", id: "history-grid" }, el("thead", {}, head), el("tbody", {}, ...rows))
      : el("div", { className: "empty" }, "No session matches."));
    const pages = Math.max(1, Math.ceil(answer.total / perPage));
    document.getElementById("pager").replaceChildren(
      el("button", { disabled: page <= 1, onclick: () => { page--; loadHistory(); } }, "‹ Previous"),
      el("span", { id: "page-info" }, `Page ${page} of ${pages} · ${answer.total} sessions`),
      el("button", { disabled: page >= pages, onclick: () => { page++; loadHistory(); } }, "Next ›"));
  }

  window.addEventListener("hashchange", () => show(location.hash === "#history" ? "history" : "online"));
  await loadOnline();
  show(location.hash === "#history" ? "history" : "online");
})();
