"use strict";
(async () => {
  const { api, el, time, showError } = Gatehouse;
  await Gatehouse.frame("commands");
  const form = document.getElementById("filters");
  let page = 1;
  const perPage = 50;
  form.addEventListener("submit", (e) => { e.preventDefault(); page = 1; load(); });
  async function load() {
    const params = new URLSearchParams({ page, per_page: perPage });
    for (const [k, v] of new FormData(form)) if (v) params.set(k, v);
    const results = document.getElementById("results");
    try {
      const answer = await api("/api/v1/commands?" + params);
      results.replaceChildren(answer.commands.length ? el("table", { className: "grid", id: "commands-grid" },
        el("thead", {}, el("tr", {}, ...["Time", "User", "Asset", "Account", "Command", "Risk", "Session"].map((h) => el("th", {}, h)))),
        el("tbody", {}, ...answer.commands.map((c) => el("tr", {},
          el("td", {}, time(c.time)), el("td", {}, c.user), el("td", {}, c.asset), el("td", {}, c.account),
          el("td", { className: "mono" }, c.command), el("td", { className: "risk-" + c.risk }, c.risk + (c.rule ? ` (${c.rule})` : "")),
          el("td", {}, el("a", { href: `/sessions/${c.session_id}#t=${c.offset}`, className: "replay-link" }, `replay at ${Gatehouse.clock(c.offset)}`))))))
        : el("div", { className: "empty" }, "No command matches."));
      document.getElementById("pager").replaceChildren(
        el("button", { disabled: page <= 1, onclick: () => { page--; load(); } }, "‹ Previous"),
        el("span", {}, `Page ${page}`),
        el("button", { disabled: answer.commands.length < perPage, onclick: () => { page++; load(); } }, "Next ›"));
    } catch (error) { showError(results, error); }
  }
  load();
})();
