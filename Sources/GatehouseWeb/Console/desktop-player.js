// The desktop (RDP) player of the console: draws Gatehouse desktop recordings (`.gdr`, see
// docs/desktop-recording.md) on a <canvas>, from the fetched recording (replay, with seeking)
// or from the live WebSocket (the same records, the current screen first).
//
// Nothing from a recording is ever parsed as HTML: event texts go in through textContent and
// title only.
"use strict";

const GatehouseDesktop = (() => {
  const { el, clock } = Gatehouse;
  const RESIZE = 1, TILE = 2, KEYFRAME = 3, POINTER = 4, EVENT = 5, END = 6;
  const RECORD_HEADER = 9; // type u8, length u32 LE, time u32 LE
  const IDLE_LIMIT = 2000; // ms: with "skip idle", longer pauses are cut to this
  const MAX_SIDE = 16384;
  const DECODE_AHEAD = 32; // tiles inflated at once before they are drawn in order

  // ---- the format

  // The JSON header line at the start of `bytes`: {header, offset of the first record}, or null
  // while the line is incomplete.
  function parseHeader(bytes) {
    const newline = bytes.indexOf(10);
    if (newline < 0) return null;
    return { header: checkHeader(JSON.parse(new TextDecoder().decode(bytes.subarray(0, newline)))), offset: newline + 1 };
  }

  function checkHeader(header) {
    if (!header || header.kind !== "gatehouse-desktop") throw new Error("this is not a Gatehouse desktop recording");
    if (header.version !== 2) throw new Error(`unsupported desktop recording version ${header.version}`);
    return header;
  }

  // The whole records in bytes[offset...]: [{type, t (ms), payload}] and where the first
  // incomplete one starts (a torn last record, or the rest of a record still on its way).
  function parseRecords(bytes, offset = 0) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const records = [];
    while (bytes.length - offset >= RECORD_HEADER) {
      const length = view.getUint32(offset + 1, true);
      if (bytes.length - offset - RECORD_HEADER < length) break;
      const start = offset + RECORD_HEADER;
      records.push({ type: bytes[offset], t: view.getUint32(offset + 5, true), payload: bytes.subarray(start, start + length) });
      offset = start + length;
    }
    return { records, rest: offset };
  }

  function u16(payload, at) { return payload[at] | (payload[at + 1] << 8); }

  function isImage(r) { return (r.type === TILE || r.type === KEYFRAME) && r.payload.length > 8; }

  // A zlib stream (RFC 1950) inflated by the browser.
  async function inflate(bytes) {
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  // Tile pixels are stored as RGB rows, each byte after a row's first pixel the difference
  // from the pixel to its left (PNG's Sub filter): back to RGBA for ImageData.
  function unfilter(stored, w, h) {
    const out = new Uint8ClampedArray(w * h * 4);
    for (let y = 0; y < h; y++) {
      let r = 0, g = 0, b = 0, s = y * w * 3, d = y * w * 4;
      for (let x = 0; x < w; x++, s += 3, d += 4) {
        r = (r + stored[s]) & 255; g = (g + stored[s + 1]) & 255; b = (b + stored[s + 2]) & 255;
        out[d] = r; out[d + 1] = g; out[d + 2] = b; out[d + 3] = 255;
      }
    }
    return out;
  }

  // The pixels of a TILE or KEYFRAME, or null if they cannot be read (the record is skipped).
  async function decode(r) {
    const w = u16(r.payload, 4), h = u16(r.payload, 6);
    if (w === 0 || h === 0) return null;
    try {
      const stored = await inflate(r.payload.subarray(8));
      return stored.length >= w * h * 3 ? new ImageData(unfilter(stored, w, h), w, h) : null;
    } catch (error) {
      return null;
    }
  }

  function eventOf(r) {
    try {
      const value = JSON.parse(new TextDecoder().decode(r.payload));
      return value && typeof value === "object" && !Array.isArray(value) ? value : { kind: "event" };
    } catch (error) {
      return { kind: "event" };
    }
  }

  // An event in words, e.g. `clipboard upload: "text" (1234 bytes)`.
  function describe(event) {
    let words = String(event.kind || "event");
    if (event.direction) words += " " + String(event.direction);
    if (typeof event.text === "string" && event.text) words += `: "${event.text}"`;
    if (typeof event.bytes === "number") words += ` (${event.bytes} bytes)`;
    return words;
  }

  // ---- the screen: a canvas at the desktop's own size, scaled by CSS, and a pointer over it

  class Screen {
    constructor(width, height) {
      this.canvas = el("canvas", { id: "desktop-canvas", width: 1, height: 1 });
      this.ctx = this.canvas.getContext("2d");
      this.pointer = el("div", { className: "desktop-pointer", id: "desktop-pointer", hidden: true }, el("span", {}));
      this.stage = el("div", { className: "desktop-stage" }, this.canvas, this.pointer);
      this.box = el("div", { className: "desktop-screen", id: "desktop-screen" }, this.stage);
      this.resize(width, height);
    }

    // The screen becomes w×h, black.
    resize(w, h) {
      if (!(w >= 1 && h >= 1 && w <= MAX_SIDE && h <= MAX_SIDE)) return;
      this.canvas.width = w;
      this.canvas.height = h;
      this.ctx.fillStyle = "#000";
      this.ctx.fillRect(0, 0, w, h);
      this.stage.style.aspectRatio = `${w} / ${h}`;
      this.stage.style.setProperty("--ar", String(w / h));
      this.placePointer();
    }

    movePointer(x, y) {
      this.pointerAt = { x, y };
      this.placePointer();
    }

    hidePointer() {
      this.pointerAt = null;
      this.pointer.hidden = true;
    }

    placePointer() {
      if (!this.pointerAt) return;
      this.pointer.hidden = false;
      this.pointer.style.left = `${(100 * this.pointerAt.x) / this.canvas.width}%`;
      this.pointer.style.top = `${(100 * this.pointerAt.y) / this.canvas.height}%`;
    }

    // Draws one record; `image` is the decoded pixels of a TILE or KEYFRAME.
    draw(r, image) {
      const p = r.payload;
      switch (r.type) {
        case RESIZE:
          if (p.length >= 4) this.resize(u16(p, 0), u16(p, 2));
          break;
        case KEYFRAME:
          if (p.length >= 8 && (u16(p, 4) !== this.canvas.width || u16(p, 6) !== this.canvas.height)) this.resize(u16(p, 4), u16(p, 6));
        // falls through: a keyframe is drawn like a tile at 0,0
        case TILE:
          if (image) this.ctx.putImageData(image, u16(p, 0), u16(p, 2));
          break;
        case POINTER:
          if (p.length >= 4) this.movePointer(u16(p, 0), u16(p, 2));
          break;
        default: // EVENT and END are not drawn; unknown types are skipped
      }
    }
  }

  // Draws records in order. Tiles are inflated a few at a time ahead of drawing, then a batch
  // is drawn at once, so the canvas always shows the screen as of one record time (`drawn`).
  // `stale()` true stops it (a seek superseded this work).
  async function drawAll(screen, records, from, to, stale, drawn) {
    let i = from;
    while (i < to) {
      let end = Math.min(to, i + DECODE_AHEAD);
      while (end < to && records[end].t === records[end - 1].t) end++; // one time is drawn whole
      const images = await Promise.all(records.slice(i, end).map((r) => isImage(r) ? decode(r) : null));
      if (stale()) return i;
      for (let k = i; k < end; k++) screen.draw(records[k], images[k - i]);
      i = end;
      drawn(records[end - 1].t, i);
    }
    return i;
  }

  // The index of the last element of `sorted` (record indexes) whose record time is <= t, or -1.
  function lastAtOrBefore(records, sorted, t) {
    let lo = 0, hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (records[sorted[mid]].t <= t) lo = mid + 1; else hi = mid;
    }
    return lo - 1;
  }

  async function fetchRecording(url) {
    const response = await fetch(url, { credentials: "same-origin" });
    if (response.status === 401) {
      location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search + location.hash);
      throw new Error("not logged in");
    }
    if (!response.ok) {
      let message = response.statusText;
      try { message = (await response.json()).error || message; } catch (error) { /* not JSON */ }
      throw new Error(message);
    }
    return new Uint8Array(await response.arrayBuffer());
  }

  function eventList(onPick) {
    const list = el("ol", { className: "desktop-events", id: "desktop-events" });
    const node = el("section", { className: "desktop-events-box", hidden: true }, el("h3", {}, "Events"), list);
    return {
      node,
      add(t, event) {
        node.hidden = false;
        const item = el("li", { className: "desktop-event" + (onPick ? " clickable" : ""), dataset: { t: String(t / 1000) } },
          el("span", { className: "time" }, clock(t / 1000)), " ", el("span", {}, describe(event)));
        if (onPick) item.addEventListener("click", () => onPick(t));
        list.append(item);
        while (list.children.length > 500) list.firstChild.remove();
      },
    };
  }

  // ---- replay: the recording fetched whole, then played, paused and sought on the canvas.
  // Returns a promise of { seek(seconds, play), play(), pause(), now() }.
  async function replay({ container, controls, timeline, played, url }) {
    container.replaceChildren(el("div", { className: "notice", id: "desktop-loading" }, "Loading the desktop recording…"));
    let bytes, header, records;
    try {
      bytes = await fetchRecording(url);
      const head = parseHeader(bytes);
      if (!head) throw new Error("the recording has no header");
      header = head.header;
      records = parseRecords(bytes, head.offset).records;
    } catch (error) {
      container.replaceChildren(el("div", { className: "error", id: "desktop-error" }, "Cannot play this recording: " + String(error.message || error)));
      return null;
    }

    const screen = new Screen(header.width, header.height);
    const keyframes = [], pointers = [], events = [];
    records.forEach((r, i) => {
      if (r.type === KEYFRAME && r.payload.length >= 8) keyframes.push(i);
      else if (r.type === POINTER) pointers.push(i);
      else if (r.type === EVENT) events.push({ t: r.t, event: eventOf(r) });
    });
    const duration = records.length ? records[records.length - 1].t : 0; // ms

    let t = 0;          // the player's clock, ms of recording time
    let next = 0;       // the first record not drawn yet
    let shown = 0;      // the time the canvas shows
    let generation = 0; // bumped by every seek: older work stops
    let work = Promise.resolve();
    let playing = false, ticking = false, speed = 1, skipIdle = false, lastTick = 0;

    function enqueue(job) {
      work = work.then(job).catch((error) => console.error("desktop player:", error));
      return work;
    }

    function show(time) {
      shown = time;
      container.dataset.time = String(time / 1000);
      played.style.width = duration > 0 ? `${Math.min(100, (100 * time) / duration)}%` : "0";
      timeLabel.textContent = `${clock(time / 1000)} / ${clock(duration / 1000)}`;
    }

    // Draws every record up to `target` from `next` on.
    async function drawUntil(target, g) {
      let to = next;
      while (to < records.length && records[to].t <= target) to++;
      next = await drawAll(screen, records, next, to, () => g !== generation, (time, i) => { next = i; show(time); });
      if (g === generation) show(target);
    }

    // The screen at `target`: from the last keyframe at or before it (or the start), unless
    // the canvas is already on the way there.
    async function jump(target, g) {
      const k = lastAtOrBefore(records, keyframes, target);
      const start = k >= 0 ? keyframes[k] : 0;
      if (!(target >= shown && start < next)) {
        if (k < 0) screen.resize(header.width, header.height);
        const p = lastAtOrBefore(records, pointers, start > 0 ? records[start].t : -1);
        if (p >= 0 && pointers[p] < start) screen.draw(records[pointers[p]], null); else screen.hidePointer();
        next = start;
      }
      await drawUntil(target, g);
    }

    function seek(seconds, play = playing) {
      const target = Math.max(0, Math.min(duration, Math.round(seconds * 1000)));
      const g = ++generation;
      t = target;
      if (!play) pause();
      return enqueue(() => jump(target, g)).then(() => { if (play && g === generation) start(); });
    }

    // With "skip idle", a pause of more than 2 s between two records lasts 2 s.
    function advance(from, ms) {
      let to = from + ms;
      if (skipIdle && next < records.length) {
        const before = next > 0 ? records[next - 1].t : 0, after = records[next].t;
        if (after - before > IDLE_LIMIT && to > before + IDLE_LIMIT && to < after) to = after;
      }
      return Math.min(to, duration);
    }

    function tick() {
      if (!playing) { ticking = false; return; }
      const now = performance.now();
      t = advance(t, (now - lastTick) * speed);
      lastTick = now;
      const g = generation, target = t;
      enqueue(() => drawUntil(target, g)).then(() => {
        if (playing && g === generation && t >= duration) { pause(); container.dataset.state = "ended"; }
        if (playing) setTimeout(tick, 30); else ticking = false;
      });
    }

    function start() {
      if (t >= duration && duration > 0) { seek(0, true); return; }
      playing = true;
      container.dataset.state = "playing";
      playButton.textContent = "Pause";
      lastTick = performance.now();
      if (!ticking) { ticking = true; setTimeout(tick, 0); }
    }

    function pause() {
      playing = false;
      container.dataset.state = "paused";
      playButton.textContent = "Play";
    }

    // ---- controls, seek bar and events
    const playButton = el("button", { id: "play", onclick: () => (playing ? pause() : start()) }, "Play");
    const speedSelect = el("select", { id: "speed", title: "Speed", onchange: () => { speed = parseFloat(speedSelect.value); } },
      ...[0.5, 1, 2, 4, 8, 16].map((s) => el("option", { value: s, selected: s === 1 }, s + "×")));
    const eventAt = (direction) => {
      const times = events.map((e) => e.t);
      const target = direction < 0 ? times.filter((x) => x < shown - 500).pop() : times.find((x) => x > shown + 1);
      if (target !== undefined) seek(target / 1000);
    };
    const previous = el("button", { id: "prev-event", title: "Previous event", onclick: () => eventAt(-1) }, "‹ Previous event");
    const following = el("button", { id: "next-event", title: "Next event", onclick: () => eventAt(1) }, "Next event ›");
    const idleBox = el("input", { type: "checkbox", id: "skip-idle", onchange: () => { skipIdle = idleBox.checked; } });
    const idleLabel = el("label", { title: "Pauses longer than 2 s are shortened to 2 s" }, idleBox, " Skip idle time");
    const full = el("button", { id: "fullscreen", onclick: () => screen.box.requestFullscreen && screen.box.requestFullscreen() }, "Full screen");
    const timeLabel = el("span", { className: "time", id: "player-time" }, `0:00 / ${clock(duration / 1000)}`);
    controls.replaceChildren(playButton, speedSelect, previous, following, idleLabel, full, timeLabel);

    for (const e of events) {
      timeline.append(el("div", { className: "mark event", title: `${clock(e.t / 1000)} ${describe(e.event)}`,
        style: `left: ${duration > 0 ? (100 * e.t) / duration : 0}%` }));
    }
    timeline.addEventListener("click", (e) => {
      const r = timeline.getBoundingClientRect();
      seek((duration / 1000) * Math.min(1, Math.max(0, (e.clientX - r.left) / r.width)));
    });
    const list = eventList((time) => seek(time / 1000));
    for (const e of events) list.add(e.t, e.event);

    container.replaceChildren(screen.box, list.node);
    container.dataset.duration = String(duration / 1000);
    container.dataset.width = String(header.width);
    container.dataset.height = String(header.height);
    const startAt = parseFloat(new URLSearchParams(location.hash.slice(1)).get("t") || "0") || 0;
    await seek(startAt, false);
    container.dataset.ready = "true";
    if (startAt > 0) start();
    return { seek, play: start, pause, now: () => t / 1000, duration: duration / 1000 };
  }

  // ---- live: the live WebSocket's records drawn as they come
  function live({ container, controls, sessionId }) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/api/v1/sessions/${encodeURIComponent(sessionId)}/live`);
    socket.binaryType = "arraybuffer";
    const badge = el("span", { className: "state online", id: "live-badge" }, "LIVE");
    const note = el("span", { className: "time", id: "live-note" }, " connecting…");
    const timeLabel = el("span", { className: "time", id: "player-time" }, "");
    let screen = null, header = null, carry = new Uint8Array(0), work = Promise.resolve(), ended = false;
    const list = eventList(null);
    const full = el("button", { id: "fullscreen", onclick: () => screen && screen.box.requestFullscreen && screen.box.requestFullscreen() }, "Full screen");
    controls.replaceChildren(badge, full, note, timeLabel);
    container.replaceChildren(el("div", { className: "notice", id: "desktop-loading" }, "Connecting to the session…"));

    function shown(time) {
      container.dataset.time = String(time / 1000);
      timeLabel.textContent = header && header.timestamp ? ` ${Gatehouse.time(new Date((header.timestamp * 1000) + time).toISOString())}` : "";
    }

    function finish(text) {
      if (ended) return;
      ended = true;
      badge.className = "state finished";
      badge.textContent = "ENDED";
      note.textContent = " " + text;
      container.dataset.state = "ended";
    }

    socket.addEventListener("message", (message) => {
      if (typeof message.data === "string") {
        try {
          header = checkHeader(JSON.parse(message.data));
        } catch (error) {
          container.replaceChildren(el("div", { className: "error", id: "desktop-error" }, "Cannot show this session: " + String(error.message || error)));
          socket.close();
          return;
        }
        screen = new Screen(header.width, header.height);
        container.replaceChildren(screen.box, list.node);
        container.dataset.width = String(header.width);
        container.dataset.height = String(header.height);
        container.dataset.state = "live";
        note.textContent = " watching read-only; the user is not disturbed";
        return;
      }
      if (!screen) return;
      const incoming = new Uint8Array(message.data);
      let bytes = incoming;
      if (carry.length) { bytes = new Uint8Array(carry.length + incoming.length); bytes.set(carry); bytes.set(incoming, carry.length); }
      const { records, rest } = parseRecords(bytes);
      carry = bytes.slice(rest);
      if (!records.length) return;
      work = work.then(() => drawAll(screen, records, 0, records.length, () => false, (time) => shown(time))).then(() => {
        for (const r of records) {
          if (r.type === EVENT) list.add(r.t, eventOf(r));
          if (r.type === END) finish("the session ended");
        }
        container.dataset.ready = "true";
      }).catch((error) => console.error("desktop live:", error));
    });
    socket.addEventListener("close", (e) => {
      work.then(() => finish(e.code === 1000 || e.code === 1005 ? "the session ended" : `disconnected (${e.reason || "code " + e.code})`));
    });
    return { close: () => socket.close() };
  }

  return { replay, live, parseHeader, parseRecords, describe };
})();
