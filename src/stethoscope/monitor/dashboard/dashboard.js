// Stethoscope monitor dashboard: plain SVG timelines, no library, nothing loaded from elsewhere.
// Every request goes to this app through `get`. When reads are protected, the login form posts the
// token once to /login, which answers with an HttpOnly, SameSite=Strict cookie: no script (this one
// included) ever holds the token afterwards, and it never goes into a URL or into storage.
// Images and audio are fetched as blobs and shown through object URLs. Operator actions (acknowledge,
// label, mute) are JSON POSTs carried by the same cookie; the author is the logged-in token's name.
"use strict";

const POLL_MS = 2000;        // how often new events and alarms are asked for
const MAX_POINTS = 300;      // points kept per machine timeline
const PAGE = 1000;           // events per /events request while catching up
const SVG_NS = "http://www.w3.org/2000/svg";
const W = 900, H = 190, M = { left: 64, right: 12, top: 10, bottom: 24 };

const state = {
  machines: [],              // /machines rows
  events: new Map(),         // machine -> events, oldest first
  alarms: [],                // /alarms rows, newest first
  mutes: [],                 // /mutes?current=true rows
  labels: new Map(),         // event id -> its label (/labels)
  ackAlarm: null,            // the alarm the acknowledge form is for
  lastId: 0,
  selected: null,
  started: false,
  urls: [],                  // object URLs of the shown event, revoked when another is shown
};

class HttpError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function get(path, as = "json") {
  const answer = await fetch(path, { credentials: "same-origin" });
  if (!answer.ok) {
    const body = await answer.json().catch(() => ({}));
    if (answer.status === 401) document.getElementById("login").hidden = false;
    throw new HttpError(answer.status, body.detail || answer.statusText);
  }
  return as === "json" ? answer.json() : answer.blob();
}

async function send(path, body) {
  const answer = await fetch(path, { method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const said = await answer.json().catch(() => ({}));
  if (!answer.ok) {
    if (answer.status === 401) document.getElementById("login").hidden = false;
    throw new HttpError(answer.status, said.detail || answer.statusText);
  }
  return said;
}

function el(tag, attrs = {}, text = "") {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG_NS, tag.slice(4)) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

const clock = (t) => new Date(t * 1000).toLocaleTimeString([], { hour12: false });
const when = (t) => (t == null ? "" : new Date(t * 1000).toLocaleString([], { hour12: false }));
const number = (v) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-2 && v !== 0) ? v.toExponential(2) : v.toPrecision(4));

// -- data ------------------------------------------------------------------------------------
async function load() {
  state.machines = await get("/machines");
  for (const m of state.machines) {
    const newest = await get(`/events?machine=${encodeURIComponent(m.machine)}&limit=${MAX_POINTS}`);
    state.events.set(m.machine, newest.reverse());
    for (const e of newest) state.lastId = Math.max(state.lastId, e.id);
  }
  await loadOperator();
}

async function loadOperator() {
  state.alarms = await get("/alarms?limit=100");
  state.mutes = await get("/mutes?current=true&limit=100");
  state.labels = new Map((await get("/labels?limit=1000")).map((l) => [l.event_id, l]));
}

async function poll() {
  state.machines = await get("/machines");  // a restarted service may serve other machines
  for (const m of state.machines) if (!state.events.has(m.machine)) state.events.set(m.machine, []);
  for (;;) {  // catch up page by page, oldest first
    const fresh = await get(`/events?after_id=${state.lastId}&order=asc&limit=${PAGE}`);
    for (const e of fresh) {
      const list = state.events.get(e.machine);
      if (list) list.push(e);  // a machine no longer served has no timeline
      state.lastId = Math.max(state.lastId, e.id);
    }
    if (fresh.length < PAGE) break;
  }
  for (const list of state.events.values()) list.splice(0, Math.max(0, list.length - MAX_POINTS));
  await loadOperator();
}

// -- timelines -------------------------------------------------------------------------------
function timeRange() {
  let lo = Infinity, hi = -Infinity;
  for (const list of state.events.values()) {
    if (list.length) { lo = Math.min(lo, list[0].time); hi = Math.max(hi, list[list.length - 1].time); }
  }
  if (!Number.isFinite(lo)) { hi = Date.now() / 1000; lo = hi - 60; }
  const pad = Math.max(1, (hi - lo) * 0.02);
  return [lo - pad, hi + pad];
}

function panel(machine) {
  let box = document.getElementById(`m-${machine}`);
  if (box) return box;
  box = el("article", { id: `m-${machine}`, class: "machine", "data-machine": machine });
  box.append(el("h2"), el("p", { class: "meta" }), el("svg:svg", { class: "timeline", viewBox: `0 0 ${W} ${H}`,
    role: "img", "aria-label": `score timeline of ${machine}` }));
  const legend = el("p", { class: "legend" });
  for (const [cls, label] of [["dot normal", "normal"], ["dot anomaly", "anomaly"], ["line", "threshold"],
    ["band", "alarm"]]) {
    const item = el("span");
    item.append(el("i", { class: cls }), label);
    legend.append(item);
  }
  box.append(legend);
  box.querySelector("svg").addEventListener("click", (ev) => {
    const pt = ev.target.closest("circle.pt");
    if (pt) select(Number(pt.dataset.id));
  });
  document.getElementById("machines").append(box);
  return box;
}

function drawMachine(m, [t0, t1]) {
  const box = panel(m.machine);
  const events = state.events.get(m.machine) || [];
  const title = box.querySelector("h2");
  title.textContent = m.machine;
  if (m.active_alarm != null) title.append(el("span", { class: "alarm" }, "ALARM"));
  const mute = state.mutes.find((u) => u.machine === m.machine && u.starts_at <= Date.now() / 1000);
  if (mute) title.append(el("span", { class: "muted" }, `muted until ${when(mute.ends_at)}`));
  box.querySelector(".meta").textContent = `${m.system} · model ${m.model_version} · threshold ${number(m.threshold)}`
    + ` · alarm rule ${m.alarm_k} of the last ${m.alarm_n} · ${m.scores} scores`;

  const scores = events.map((e) => e.score).concat([m.threshold]);
  let lo = Math.min(...scores), hi = Math.max(...scores);
  if (hi - lo < 1e-12) { lo -= 1; hi += 1; }
  const pad = (hi - lo) * 0.08;
  lo -= pad; hi += pad;
  const x = (t) => M.left + ((t - t0) / (t1 - t0)) * (W - M.left - M.right);
  const y = (s) => H - M.bottom - ((s - lo) / (hi - lo)) * (H - M.top - M.bottom);

  const svg = box.querySelector("svg");
  svg.replaceChildren();
  for (const a of state.alarms.filter((a) => a.machine === m.machine)) {
    const start = Math.max(t0, a.raised_at), end = a.cleared_at == null ? t1 : Math.min(t1, a.cleared_at);
    if (end < t0 || start > t1) continue;
    const band = el("svg:rect", { class: `alarm-band${a.active ? " active" : ""}`, x: x(start), y: M.top,
      width: Math.max(2, x(end) - x(start)), height: H - M.top - M.bottom });
    band.append(el("svg:title", {}, `alarm ${a.id}: raised ${when(a.raised_at)}` +
      (a.cleared_at == null ? ", active" : `, cleared ${when(a.cleared_at)}`)));
    svg.append(band);
  }
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    svg.append(el("svg:line", { class: "grid", x1: M.left, x2: W - M.right, y1: y(v), y2: y(v) }),
      el("svg:text", { x: M.left - 6, y: y(v) + 4, "text-anchor": "end" }, number(v)));
  }
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((t1 - t0) * i) / 4;
    svg.append(el("svg:text", { x: x(t), y: H - 6, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" },
      clock(t)));
  }
  svg.append(el("svg:line", { class: "axis", x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom }),
    el("svg:line", { class: "axis", x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom }));
  const threshold = el("svg:line", { class: "threshold", x1: M.left, x2: W - M.right, y1: y(m.threshold),
    y2: y(m.threshold) });
  threshold.append(el("svg:title", {}, `threshold ${number(m.threshold)}`));
  svg.append(threshold);
  for (const e of events) {
    const pt = el("svg:circle", { class: `pt ${e.decision ? "anomaly" : "normal"}${e.id === state.selected ? " selected" : ""}`,
      cx: x(e.time), cy: y(e.score), r: 4, "data-id": e.id });
    pt.append(el("svg:title", {}, `event ${e.id} · ${when(e.time)} · score ${number(e.score)}` +
      (e.source ? ` · ${e.source}` : "")));
    svg.append(pt);
  }
}

function drawAlarms() {
  const body = document.querySelector("#alarms tbody");
  body.replaceChildren();
  for (const a of state.alarms) {
    const row = el("tr", { class: a.active ? "active" : "", "data-event": a.raised_score_id });
    row.dataset.alarm = a.id;
    const ack = el("td", { class: "ack" }, a.ack ? `${a.ack.author}: ${a.ack.note}` : "");
    if (!a.ack) {
      const button = el("button", { type: "button", class: "ack" }, "acknowledge");
      button.addEventListener("click", (ev) => { ev.stopPropagation(); askAck(a); });
      ack.append(button);
    }
    row.append(el("td", {}, a.machine), el("td", {}, when(a.raised_at)),
      el("td", {}, a.active ? "active" : when(a.cleared_at)), el("td", {}, `${a.k}/${a.n}`), ack);
    row.addEventListener("click", () => select(a.raised_score_id));
    body.append(row);
  }
  document.getElementById("no-alarms").hidden = state.alarms.length > 0;
}

function drawMutes() {
  const list = document.getElementById("mutes");
  list.replaceChildren();
  for (const u of state.mutes) {
    const item = el("li", { "data-mute": u.id }, `${u.machine}: ${when(u.starts_at)} to ${when(u.ends_at)} · ` +
      `${u.reason} (by ${u.author}) `);
    const button = el("button", { type: "button" }, "unmute");
    button.addEventListener("click", () => act(`/mutes/${u.id}/cancel`, {}, () => `${u.machine} unmuted`));
    item.append(button);
    list.append(item);
  }
  const pick = document.getElementById("mute-machine");
  const names = state.machines.map((m) => m.machine);
  if ([...pick.options].map((o) => o.value).join() !== names.join()) {
    const chosen = pick.value;
    pick.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    if (names.includes(chosen)) pick.value = chosen;
  }
}

function draw() {
  const range = timeRange();
  for (const m of state.machines) drawMachine(m, range);
  drawAlarms();
  drawMutes();
  const active = state.alarms.filter((a) => a.active).length;
  document.getElementById("status").textContent = `${state.machines.length} machine(s) · ` +
    `${active} active alarm(s) · updated ${clock(Date.now() / 1000)}`;
}

// -- one event -------------------------------------------------------------------------------
async function show(id, path, target, note) {
  const node = document.getElementById(target);
  const caption = document.getElementById(note);
  try {
    const url = URL.createObjectURL(await get(path, "blob"));
    state.urls.push(url);
    if (state.selected !== id) return;
    node.src = url;
    node.hidden = false;
    caption.textContent = "";
  } catch (err) {
    if (state.selected !== id) return;
    node.hidden = true;
    caption.textContent = err.message;
  }
}

function select(id) {
  state.selected = id;
  state.urls.forEach((url) => URL.revokeObjectURL(url));
  state.urls = [];
  let event = null;
  for (const list of state.events.values()) event = event || list.find((e) => e.id === id);
  document.getElementById("detail-text").textContent = event
    ? `event ${id} · ${event.machine} · ${when(event.time)} · score ${number(event.score)} ` +
      `(threshold ${number(event.threshold)}) · ${event.decision ? "ANOMALY" : "normal"}` +
      (event.source ? ` · source ${event.source}` : "")
    : `event ${id}`;
  for (const target of ["map", "spectrogram", "player"]) document.getElementById(target).hidden = true;
  document.getElementById("audio-note").textContent = "";
  show(id, `/events/${id}/map.png`, "map", "map-note");
  show(id, `/events/${id}/spectrogram.png`, "spectrogram", "spectrogram-note");
  show(id, `/events/${id}/audio`, "player", "audio-note");
  document.getElementById("label-form").hidden = false;
  showLabel();
  draw();
}

function showLabel() {
  const label = state.labels.get(state.selected);
  document.getElementById("label-said").textContent = label
    ? `marked ${label.label} by ${label.author} at ${when(label.time)}${label.note ? `: ${label.note}` : ""}` : "";
}

// -- operator actions ------------------------------------------------------------------------
function tell(text) { document.getElementById("op-said").textContent = text; }

async function act(path, body, done) {
  try {
    const said = await send(path, body);
    tell(done(said));
    await poll();
    draw();
    showLabel();
    return true;
  } catch (err) {
    tell(err.status === 401 ? `log in with a token of the operate scope to do this (${err.message})`
      : `refused: ${err.message}`);
    return false;
  }
}

function askAck(alarm) {
  state.ackAlarm = alarm.id;
  document.getElementById("ack-what").textContent = `acknowledge alarm ${alarm.id} of ${alarm.machine}, ` +
    `raised ${when(alarm.raised_at)}`;
  document.getElementById("ack-form").hidden = false;
  document.getElementById("ack-note").focus();
}

function localInput(t) {  // a datetime-local value (this browser's time zone) for Unix seconds t
  const d = new Date(t * 1000);
  d.setMinutes(d.getMinutes() - d.getTimezoneOffset());
  return d.toISOString().slice(0, 16);
}

document.getElementById("ack-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const note = document.getElementById("ack-note");
  if (await act(`/alarms/${state.ackAlarm}/ack`, { note: note.value }, (a) => `alarm ${a.alarm_id} ` +
    `acknowledged by ${a.author}`)) {
    note.value = "";
    document.getElementById("ack-form").hidden = true;
  }
});
document.getElementById("ack-cancel").addEventListener("click", () => {
  document.getElementById("ack-form").hidden = true;
});
document.getElementById("label-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const label = document.querySelector("#label-form input[name=label]:checked").value;
  const note = document.getElementById("label-note");
  if (await act(`/events/${state.selected}/label`, { label, note: note.value }, (l) => `event ${l.event_id} ` +
    `marked ${l.label} by ${l.author}`)) note.value = "";
});
document.getElementById("mute-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const machine = document.getElementById("mute-machine").value;
  const end = new Date(document.getElementById("mute-end").value).getTime() / 1000;
  const reason = document.getElementById("mute-reason");
  if (await act(`/machines/${encodeURIComponent(machine)}/mutes`, { end, reason: reason.value },
    (u) => `${u.machine} muted until ${when(u.ends_at)} by ${u.author}`)) reason.value = "";
});
document.getElementById("mute-end").value = localInput(Date.now() / 1000 + 3600);

// -- start -----------------------------------------------------------------------------------
async function loop() {
  try {
    await poll();
    draw();
  } catch (err) {
    document.getElementById("status").textContent = `not updated: ${err.message}`;
  }
  setTimeout(loop, POLL_MS);
}

async function start() {
  try {
    await load();
    state.started = true;
    draw();
    setTimeout(loop, POLL_MS);
  } catch (err) {
    document.getElementById("status").textContent = `cannot load: ${err.message}`;
  }
}

document.getElementById("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const field = document.getElementById("token");
  const body = new URLSearchParams({ token: field.value.trim() });
  field.value = "";
  const answer = await fetch("/login", { method: "POST", body, credentials: "same-origin" });
  if (!answer.ok) {
    const said = await answer.json().catch(() => ({}));
    document.getElementById("status").textContent = `login refused: ${said.detail || answer.statusText}`;
    return;
  }
  document.getElementById("login").hidden = true;
  tell("logged in");
  if (!state.started) start();
});
start();
