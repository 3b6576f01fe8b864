"use strict";
(async () => {
  const { api, el, time, duration, bytes, stateBadge, showError } = Gatehouse;
  const me = await Gatehouse.frame("records");
  const id = decodeURIComponent(location.pathname.split("/").pop());
  const message = document.getElementById("message");
  let s;
  try { s = await api(`/api/v1/sessions/${encodeURIComponent(id)}`); }
  catch (error) { showError(message, error); return; }
  document.title = `Session ${s.short_id} · Gatehouse`;
  document.getElementById("title").textContent = `Session ${s.short_id}: ${s.user} on ${s.asset}`;

  // ---- basic information
  const info = [["Serial", s.id], ["State", stateBadge(s.state)], ["User", s.user], ["Asset", s.asset], ["Account", s.account],
    ["Protocol", s.protocol], ["Program", s.program], ["Remote address", s.remote_address], ["Client", s.client_software],
    ["Started", time(s.started)], ["Ended", time(s.ended)], ["Duration", duration(s.duration_seconds)],
    ["Bytes in / out", `${bytes(s.bytes_in)} / ${bytes(s.bytes_out)}`], ["Terminated by", s.terminated_by || "-"],
    ["Reason", s.reason || "-"], ["Watchers", (s.watchers || []).join(", ") || "-"]];
  const dl = el("dl", { className: "info", id: "basic-dl" });
  for (const [k, v] of info) dl.append(el("dt", {}, k), el("dd", {}, v));
  const actions = el("div", { className: "player-controls" });
  // A desktop (RDP) session's recording is a .gdr file drawn by the desktop player; a
  // terminal's is an asciicast.
  const desktop = s.desktop === true;
  const extension = desktop ? "gdr" : "cast";
  if (s.has_recording) actions.append(el("a", { href: `/api/v1/sessions/${s.id}/recording`, download: `${s.id}.${extension}`, id: "download" },
    el("button", {}, `Download recording (.${extension})`)));
  if (s.state === "online" && me.role === "admin") actions.append(el("button", { className: "danger", id: "terminate", onclick: async () => {
    if (!confirm(`Terminate session ${s.short_id} of ${s.user}? The user is disconnected at once.`)) return;
    try { await api(`/api/v1/sessions/${s.id}/terminate`, { method: "POST" }); location.hash = ""; location.reload(); }
    catch (error) { showError(message, error); }
  } }, "Terminate"));
  document.getElementById("basic-info").replaceChildren(dl, actions);

  // ---- commands (loaded before the player: they are its markers)
  let commands = [];
  try { commands = (await api(`/api/v1/sessions/${s.id}/commands`)).commands; } catch (error) { showError(message, error); }

  // ---- the player: live monitor or replay
  const container = document.getElementById("player"), controls = document.getElementById("controls");
  let player = null;
  const canMonitor = s.state === "online" && me.role !== "user" && Array.isArray(s.watchers);
  const monitorButton = () => el("a", { href: "#live", onclick: () => setTimeout(() => location.reload(), 0) }, el("button", { id: "monitor" }, "Monitor live"));
  const timeline = document.getElementById("timeline"), played = document.getElementById("played");
  if (canMonitor && location.hash === "#live") {
    document.getElementById("player-title").textContent = "Live monitor";
    timeline.hidden = true;
    if (desktop) GatehouseDesktop.live({ container, controls, sessionId: s.id });
    else GatehousePlayer.live({ container, controls, sessionId: s.id });
  } else if (s.has_recording && desktop) {
    // Loads the whole recording; the rest of the page does not wait for it.
    GatehouseDesktop.replay({ container, controls, timeline, played, url: `/api/v1/sessions/${s.id}/recording` }).then((p) => {
      player = p;
      if (canMonitor) controls.append(monitorButton());
    });
  } else if (s.has_recording) {
    const markers = commands.map((c) => [c.offset, c.command]);
    const span = s.duration_seconds || 0;
    player = GatehousePlayer.replay({ container, controls, sessionId: s.id, duration: span, markers });
    if (canMonitor) controls.append(monitorButton());
  } else {
    document.getElementById("replay-section").replaceChildren(el("div", { className: "empty" }, "This session has no recording."));
  }

  // ---- commands table, searchable; a click replays from that moment
  const search = document.getElementById("command-search");
  document.getElementById("command-filter").addEventListener("submit", (e) => e.preventDefault());
  function renderCommands() {
    const needle = search.value.toLowerCase();
    const shown = commands.filter((c) => c.command.toLowerCase().includes(needle));
    const table = document.getElementById("commands-table");
    if (shown.length === 0) { table.replaceChildren(el("div", { className: "empty" }, commands.length ? "No command matches." : "No commands.")); return; }
    table.replaceChildren(el("table", { className: "grid", id: "commands-grid" },
      el("thead", {}, el("tr", {}, ...["Time", "At", "Command", "Risk", "Output"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...shown.map((c) => el("tr", { className: "clickable command", dataset: { offset: c.offset }, onclick: () => {
        if (player) { player.seek(c.offset); document.getElementById("replay-section").scrollIntoView(); }
      } }, el("td", {}, time(c.time)), el("td", {}, Gatehouse.clock(c.offset)), el("td", { className: "mono" }, c.command),
        el("td", { className: "risk-" + c.risk }, c.risk + (c.rule ? ` (${c.rule})` : "")), el("td", { className: "mono" }, c.output.slice(0, 300)))))));
  }
  search.addEventListener("input", renderCommands);
  renderCommands();

  // ---- collaborations, transfers, activities
  async function module(path, key, target, columns, row) {
    const node = document.getElementById(target);
    try {
      const list = (await api(`/api/v1/sessions/${s.id}/${path}`))[key];
      node.replaceChildren(list.length ? el("table", { className: "grid" }, el("thead", {}, el("tr", {}, ...columns.map((h) => el("th", {}, h)))),
        el("tbody", {}, ...list.map((x) => el("tr", {}, ...row(x).map((v) => el("td", {}, v)))))) : el("div", { className: "empty" }, "None."));
    } catch (error) { showError(node, error); }
  }
  await Promise.all([
    module("collaborations", "collaborations", "collaborations-table", ["User", "Mode", "From", "Joined", "Left"],
      (c) => [c.user, c.mode, c.remote_address, time(c.joined), c.left ? time(c.left) : "still there"]),
    module("transfers", "transfers", "transfers-table", ["Time", "Direction", "Path", "Size", "Result", "SHA-256"],
      (t) => [time(t.time), t.direction, t.path, bytes(t.bytes), t.outcome, t.sha256 ? t.sha256.slice(0, 16) + "…" : "-"]),
    module("activities", "activities", "activities-table", ["Time", "Activity", "Detail"], (a) => [time(a.time), a.kind, a.detail]),
  ]);
})();
