// The debug console page: one EventSource on /debug/stream, rendered with textContent only (event data
// comes from clients and must never become markup). No build step, no dependencies.
"use strict";

const MAX_ROWS = 500;
const KIND_OF = {
  connection: "connection", disconnection: "connection",
  subscribed: "subscription", unsubscribed: "subscription",
  client_event: "client_event", api_message: "api_message",
  webhook: "webhook", error: "error", rest_error: "error", lambda: "lambda", dropped: "error",
};

const $ = (selector) => document.querySelector(selector);
let currentApp = null;
let source = null;
let paused = false;
let held = [];
let droppedTotal = 0;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function setStatus(state, text) {
  const status = $("#status");
  status.dataset.state = state;
  status.textContent = text;
}

async function start() {
  const response = await fetch("/debug/session", { credentials: "same-origin" });
  if (response.status === 401) {
    location.reload(); // the server answers the page itself with its sign-in form
    return;
  }
  const session = await response.json();
  $("#logout").hidden = !session.login;
  $("#kind-lambda").hidden = !session.lambda; // the emulator's Lambda invocations
  $("#cost-counter").hidden = !session.cost; // the emulator's running AWS bill (GET /debug/cost)
  const select = $("#app");
  for (const app of session.apps) {
    const option = el("option", null, `${app.id} (key ${app.key})`);
    option.value = app.id;
    select.append(option);
  }
  const wanted = decodeURIComponent(location.hash.slice(1));
  if (session.apps.some((app) => app.id === wanted)) select.value = wanted;
  select.addEventListener("change", () => openStream(select.value));
  openStream(select.value);
}

function openStream(appId) {
  if (source) source.close();
  currentApp = appId;
  history.replaceState(null, "", `#${encodeURIComponent(appId)}`);
  clearLog();
  droppedTotal = 0;
  $("#dropped").textContent = "0";
  setStatus("connecting", "connecting…");
  source = new EventSource(`/debug/stream?app=${encodeURIComponent(appId)}`);
  source.onopen = () => setStatus("live", "live");
  source.onerror = () => setStatus("error", "reconnecting…");
  source.onmessage = (message) => handle(JSON.parse(message.data));
}

function handle(message) {
  switch (message.type) {
    case "hello":
      return;
    case "state":
      return renderState(message);
    case "rate":
      $("#rate").textContent = message.messages_per_second;
      if (message.usd_per_month !== undefined) {
        $("#cost").textContent = `$${message.usd_per_month.toFixed(2)}`;
      }
      return;
    case "dropped":
      droppedTotal = message.total;
      $("#dropped").textContent = droppedTotal;
      return addRow(message);
    default:
      return addRow(message);
  }
}

function renderState(state) {
  $("#connections").textContent = state.connections;
  $("#channel-count").textContent = state.channel_count;
  const body = $("#channels tbody");
  body.replaceChildren();
  for (const channel of state.channels) {
    const row = el("tr");
    row.dataset.channel = channel.name;
    const name = el("td", null, channel.name);
    name.title = "Use in the Event Creator";
    name.addEventListener("click", () => { $("#creator-channel").value = channel.name; });
    const members = el("td");
    if (channel.members) {
      members.append(el("span", null, `${channel.user_count}: `));
      for (const member of channel.members) {
        const chip = el("span", "member", member.id);
        chip.title = JSON.stringify(member.info ?? null);
        members.append(chip);
      }
    }
    row.append(name, el("td", "count", channel.subscription_count), members);
    body.append(row);
  }
  $("#no-channels").hidden = state.channels.length > 0;
}

function describe(event) {
  switch (event.type) {
    case "connection":
      return ["Connected"];
    case "disconnection":
      return [`Disconnected${event.code != null ? ` (close code ${event.code})` : ""}`,
        event.channels ? ` — left ${event.channels.join(", ")}` : ""];
    case "subscribed":
      return [`Subscribed — ${event.subscription_count} subscriber(s)`, event.occupied ? " — channel occupied" : "",
        event.user_id != null ? ` — member ${event.user_id}` : ""];
    case "unsubscribed":
      return [`Unsubscribed — ${event.subscription_count} subscriber(s)`, event.vacated ? " — channel vacated" : "",
        event.user_id != null ? ` — member ${event.user_id} left` : ""];
    case "error":
      return [`${event.error}${event.code != null ? ` ${event.code}` : ""}: ${event.message}`];
    case "rest_error":
      return [`HTTP ${event.status} for ${event.method} `, { code: event.path }, `: ${event.message}`];
    case "client_event":
      return [{ code: event.event }, " ", event.data, event.user_id != null ? ` (user ${event.user_id})` : ""];
    case "api_message":
      return [{ code: event.event }, " ", event.data];
    case "webhook":
      return [`${event.ok ? "delivered" : "failed"}: ${event.status} in ${event.duration_ms} ms — `,
        event.events.join(", ")];
    case "lambda":
      return [`${event.function} ${event.duration_ms} ms`, event.error ? ` — ${event.error}` : ""];
    case "dropped":
      return [`${event.count} event(s) dropped: this tab fell behind (${event.total} so far)`];
    default:
      return [JSON.stringify(event)];
  }
}

function addRow(event) {
  if (paused) {
    held.push(event);
    if (held.length > MAX_ROWS) held.shift(); // paused tabs stay bounded too
    return;
  }
  const row = el("tr");
  row.dataset.type = event.type;
  row.dataset.kind = KIND_OF[event.type] || event.type;
  const time = new Date(event.time || Date.now());
  const badge = el("span", `badge ${event.type}${event.type === "webhook" && !event.ok ? " failed" : ""}`,
    event.type.replace("_", " "));
  const who = event.socket_id || event.target || event.function || event.client || "";
  const channel = event.channel || (event.channels || []).join(", ");
  const details = el("td");
  for (const part of describe(event)) {
    if (part && typeof part === "object") details.append(el("code", null, part.code));
    else if (part) details.append(document.createTextNode(part));
  }
  row.append(el("td", null, time.toLocaleTimeString([], { hour12: false }) + `.${String(time.getMilliseconds()).padStart(3, "0")}`),
    el("td").appendChild(badge).parentNode, el("td", null, who), el("td", null, channel), details);
  if (event.channel) row.dataset.channel = event.channel;
  applyFilter(row);
  const body = $("#log tbody");
  body.prepend(row);
  while (body.childElementCount > MAX_ROWS) body.lastElementChild.remove();
}

function activeKinds() {
  return new Set([...document.querySelectorAll("#kinds input:checked")].map((box) => box.value));
}

function applyFilter(row, kinds = activeKinds(), text = $("#filter").value.trim().toLowerCase()) {
  const visible = kinds.has(row.dataset.kind) && (!text || row.textContent.toLowerCase().includes(text));
  row.classList.toggle("hidden", !visible);
}

function refilter() {
  const kinds = activeKinds();
  const text = $("#filter").value.trim().toLowerCase();
  for (const row of document.querySelectorAll("#log tbody tr")) applyFilter(row, kinds, text);
}

function clearLog() {
  $("#log tbody").replaceChildren();
  held = [];
}

async function sendEvent(submit) {
  submit.preventDefault();
  const result = $("#creator-result");
  result.className = "";
  result.textContent = "sending…";
  const body = {
    channel: $("#creator-channel").value,
    name: $("#creator-event").value,
    data: $("#creator-data").value,
    socket_id: $("#creator-socket").value.trim() || undefined,
  };
  try {
    const response = await fetch(`/debug/apps/${encodeURIComponent(currentApp)}/events`, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    result.className = response.ok ? "ok" : "bad";
    result.textContent = `${response.status} ${text}`;
  } catch (error) {
    result.className = "bad";
    result.textContent = String(error);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("#filter").addEventListener("input", refilter);
  $("#kinds").addEventListener("change", refilter);
  $("#clear").addEventListener("click", clearLog);
  $("#pause").addEventListener("click", () => {
    paused = !paused;
    $("#pause").textContent = paused ? `Resume` : "Pause";
    if (!paused) {
      const waiting = held;
      held = [];
      waiting.forEach(addRow);
    }
  });
  $("#creator").addEventListener("submit", sendEvent);
  start().catch((error) => setStatus("error", String(error)));
});
