// Shared by every console page: the API client, safe DOM building and formatting.
// Nothing a user typed is ever parsed as HTML: text goes in through textContent only.
"use strict";

const Gatehouse = (() => {
  const csrfKey = "gatehouse.csrf";

  async function api(path, options = {}) {
    const init = { method: options.method || "GET", credentials: "same-origin", headers: {} };
    if (options.body !== undefined) {
      init.body = JSON.stringify(options.body);
      init.headers["Content-Type"] = "application/json";
    }
    if (init.method !== "GET") init.headers["X-CSRF-Token"] = sessionStorage.getItem(csrfKey) || "";
    const response = await fetch(path, init);
    if (response.status === 401 && !options.noRedirect) {
      location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search + location.hash);
      throw new Error("not logged in");
    }
    const type = response.headers.get("Content-Type") || "";
    const data = type.includes("json") ? await response.json() : await response.text();
    if (!response.ok) throw new Error((data && data.error) || response.statusText);
    return data;
  }

  // el("td", {className: "mono"}, "text", childNode, ...): attributes are set as properties.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node[key] = value;
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function time(iso) {
    if (!iso) return "-";
    const d = new Date(iso);
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "-";
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return h > 0 ? `${h}h ${String(m).padStart(2, "0")}m ${String(r).padStart(2, "0")}s` : m > 0 ? `${m}m ${String(r).padStart(2, "0")}s` : `${r}s`;
  }

  function bytes(n) {
    if (n < 1024) return `${n} B`;
    const units = ["KiB", "MiB", "GiB", "TiB"];
    let v = n / 1024, i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
  }

  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return (h ? h + ":" + String(m).padStart(2, "0") : String(m)) + ":" + String(r).padStart(2, "0");
  }

  // The top bar; resolves to {user, role}.
  async function frame(current) {
    const me = await api("/api/v1/me");
    if (me.csrf_token) sessionStorage.setItem(csrfKey, me.csrf_token);
    const link = (href, text, key) => el("a", { href, className: key === current ? "current" : "" }, text);
    const bar = el("header", { className: "top" },
      el("span", { className: "brand" }, "Gatehouse"),
      el("nav", {}, link("/", "Session Records", "records"), link("/commands", "Commands", "commands")),
      el("span", { className: "who", id: "who" }, `${me.user} (${me.role})`),
      el("button", { id: "rdp-password", title: "For RDP clients that use NLA, such as mstsc: good for one session within 10 minutes",
        onclick: () => rdpPassword(bar) }, "RDP password"),
      el("button", { id: "logout", onclick: async () => {
        try { await api("/api/v1/logout", { method: "POST", noRedirect: true }); } catch (e) { /* already out */ }
        sessionStorage.removeItem(csrfKey);
        location.href = "/login";
      } }, "Sign out"));
    document.body.prepend(bar);
    return me;
  }

  // A one-time RDP password, shown once under the top bar.
  async function rdpPassword(bar) {
    let box = document.getElementById("rdp-password-box");
    if (!box) { box = el("div", { id: "rdp-password-box", className: "notice" }); bar.after(box); }
    try {
      const issued = await api("/api/v1/rdp-password", { method: "POST" });
      box.replaceChildren("One-time RDP password: ", el("code", { id: "rdp-password-value" }, issued.password),
        ` · log in as ${issued.username} · valid for one session until ${time(issued.expires)}`);
    } catch (error) {
      box.replaceChildren(el("span", { className: "error" }, String(error.message || error)));
    }
  }

  function showError(container, error) {
    container.replaceChildren(el("div", { className: "error" }, String(error.message || error)));
  }

  function stateBadge(state) { return el("span", { className: "state " + state }, state); }

  return { api, el, time, duration, bytes, clock, frame, showError, stateBadge, csrfKey };
})();
