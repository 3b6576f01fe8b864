// The terminal player of the console: asciinema-player over Gatehouse's segmented recordings
// (an index and screen-snapshot segments, so a long recording starts at once and seeking loads
// one segment) and over the live WebSocket (same renderer, current screen first).
"use strict";

const GatehousePlayer = (() => {
  const { el, clock } = Gatehouse;

  function missing(container) {
    container.replaceChildren(el("div", { className: "notice" },
      "The terminal player is not installed on this server (run scripts/install-web-assets)."));
  }

  // Replay: controls around the player; returns { seek(seconds), play() }.
  function replay({ container, controls, sessionId, duration, markers }) {
    if (typeof AsciinemaPlayer === "undefined") { missing(container); return null; }
    let player = null, speed = 1, idle = false, cuts = [];
    const base = `/api/v1/sessions/${sessionId}/recording/segments`;
    // With idle skipping, the player's clock runs without the long pauses: our seek bar and
    // the commands stay in recording time and are mapped to the player's.
    function toPlayer(t) {
      let cut = 0;
      for (const [time, c] of cuts) { if (time <= t) cut = c; else break; }
      return t - cut;
    }
    function toRecording(p) {
      let cut = 0;
      for (const [time, c] of cuts) { if (time - c <= p) cut = c; else break; }
      return p + cut;
    }
    const timeLabel = el("span", { className: "time", id: "player-time" }, "0:00 / " + clock(duration));

    function create(startAt, autoPlay) {
      if (player) player.dispose();
      const source = { url: idle ? base + "?idle=2" : base, format: "segmented" };
      player = AsciinemaPlayer.create(source, container, { speed, startAt: toPlayer(startAt), autoPlay, fit: "width", terminalFontSize: "14px", preload: true });
      player.addEventListener("play", () => playButton.textContent = "Pause");
      player.addEventListener("pause", () => playButton.textContent = "Play");
      player.addEventListener("ended", () => playButton.textContent = "Play");
    }
    function now() { return player ? toRecording(player.getCurrentTime() || 0) : 0; }
    async function seek(seconds, play = true) {
      await player.seek(toPlayer(Math.max(0, Math.min(seconds, duration))));
      if (play) player.play();
    }
    const playButton = el("button", { id: "play", onclick: () => { if (playButton.textContent === "Pause") player.pause(); else player.play(); } }, "Play");
    const speedSelect = el("select", { id: "speed", title: "Speed", onchange: () => {
      const at = now(), playing = playButton.textContent === "Pause";
      speed = parseFloat(speedSelect.value);
      create(at, playing);
    } }, ...[0.5, 1, 2, 4, 8, 16].map((s) => el("option", { value: s, selected: s === 1 }, s + "×")));
    const previous = el("button", { id: "prev-command", title: "Previous command", onclick: () => player.seek({ marker: "prev" }) }, "‹ Previous command");
    const next = el("button", { id: "next-command", title: "Next command", onclick: () => player.seek({ marker: "next" }) }, "Next command ›");
    const idleBox = el("input", { type: "checkbox", id: "skip-idle", onchange: async () => {
      const at = now(), playing = playButton.textContent === "Pause";
      idle = idleBox.checked;
      cuts = idle ? ((await Gatehouse.api(base + "?idle=2")).gatehouse_idle_cuts || []) : [];
      create(at, playing);
    } });
    const idleLabel = el("label", { title: "Pauses longer than 2 s are shortened to 2 s" }, idleBox, " Skip idle time");
    const full = el("button", { id: "fullscreen", onclick: () => container.requestFullscreen && container.requestFullscreen() }, "Full screen");
    controls.replaceChildren(playButton, speedSelect, previous, next, idleLabel, full, timeLabel);

    // Our own seek bar, with a tick per command, so a command is one click away.
    const timeline = document.getElementById("timeline"), played = document.getElementById("played");
    for (const [t, label] of markers) {
      timeline.append(el("div", { className: "mark", title: label, style: `left: ${duration > 0 ? (100 * t / duration) : 0}%` }));
    }
    timeline.addEventListener("click", (e) => {
      const r = timeline.getBoundingClientRect();
      seek(duration * (e.clientX - r.left) / r.width, playButton.textContent === "Pause");
    });
    setInterval(() => {
      const t = now();
      played.style.width = duration > 0 ? `${Math.min(100, 100 * t / duration)}%` : "0";
      timeLabel.textContent = `${clock(t)} / ${clock(duration)}`;
      container.dataset.time = String(t);
    }, 250);

    const start = parseFloat(new URLSearchParams(location.hash.slice(1)).get("t") || "0");
    create(start, start > 0);
    return { seek, play: () => player.play(), pause: () => player.pause(), now };
  }

  // Live: the same renderer on the live WebSocket.
  function live({ container, controls, sessionId }) {
    if (typeof AsciinemaPlayer === "undefined") { missing(container); return null; }
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const player = AsciinemaPlayer.create({ driver: "websocket", url: `${scheme}//${location.host}/api/v1/sessions/${sessionId}/live` },
      container, { autoPlay: true, fit: "width", terminalFontSize: "14px" });
    controls.replaceChildren(el("span", { className: "state online", id: "live-badge" }, "LIVE"),
      el("span", { className: "time" }, " watching read-only; the user is not disturbed"));
    return player;
  }

  return { replay, live };
})();
