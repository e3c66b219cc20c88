// The External Event Destinations page: plain JavaScript over the /api JSON API.
"use strict";

const EVENT_TYPES = ["RECORDING_STARTED_EVENT", "RECORDING_PAUSED_EVENT",
  "RECORDING_RESUMED_EVENT", "RECORDING_ENDED_EVENT", "SEGMENT_STARTED_EVENT",
  "SEGMENT_ENDED_EVENT"];
const MASK = "********";
const $ = (sel) => document.querySelector(sel);
const state = { token: sessionStorage.getItem("recnotify-token") || "", dests: [],
  parameters: {}, presets: {}, editing: null, lastParamInput: null, attemptsOffset: 0,
  deadOffset: 0, refreshing: false };
const REFRESH_MS = 10_000;
const PAGE = 20;

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (state.token) headers["Authorization"] = "Bearer " + state.token;
  // every change is JSON, even without a body: the service refuses other types (no CSRF)
  if (body !== undefined || method !== "GET") headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers,
    body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (resp.status === 401) { showLogin("The token was refused."); }
  if (!resp.ok) {
    const err = new Error((data && data.errors || []).map((e) => e.message).join("; ")
      || "HTTP " + resp.status);
    err.status = resp.status;
    err.errors = (data && data.errors) || [];
    throw err;
  }
  return data;
}

// -- sign in -----------------------------------------------------------------------------
function showLogin(message) {
  $("#app").hidden = true;
  $("#login").hidden = false;
  $("#logout").hidden = true;
  $("#login-error").textContent = message || "";
}

async function start() {
  const open = document.body.dataset.auth === "open";
  $("#open-banner").hidden = !open;
  if (!open && !state.token) { showLogin(""); return; }
  try {
    [state.parameters, state.presets] = await Promise.all([api("GET", "/api/parameters"),
      api("GET", "/api/presets")]);
  } catch (e) { if (e.status !== 401) showLogin(e.message); return; }
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#logout").hidden = open;
  await refreshAll();
}

$("#login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  state.token = $("#token").value.trim();
  sessionStorage.setItem("recnotify-token", state.token);
  start();
});
$("#logout").addEventListener("click", () => {
  state.token = "";
  sessionStorage.removeItem("recnotify-token");
  showLogin("");
});

async function refreshAll() {
  await loadDestinations();
  await Promise.all([loadAttempts(), loadDeadLetters()]);
}

// -- destinations list ---------------------------------------------------------------------
async function loadDestinations() {
  state.dests = await api("GET", "/api/destinations");
  const tbody = $("#dest-table tbody");
  tbody.replaceChildren();
  $("#no-dests").hidden = state.dests.length > 0;
  const [last, status] = await Promise.all([Promise.all(state.dests.map((d) =>
    api("GET", "/api/attempts?limit=1&destination=" + encodeURIComponent(d.name))
      .then((rows) => rows[0]).catch(() => undefined))),
    api("GET", "/api/status").catch(() => [])]);
  const byName = Object.fromEntries(status.map((s) => [s.destination, s]));
  state.dests.forEach((d, i) => {
    const events = (d.events === "all" ? "all" : d.events.join(", "))
      + (d.filter ? " (filtered)" : "");
    const a = last[i];
    const st = byName[d.name] || {};
    const outcome = a ? `${a.outcome} (${a.status || a.error || ""}) ${a.time || ""}` : "none yet";
    const rate = st.success_rate_1h == null ? "-"
      : `${Math.round(st.success_rate_1h * 100)}% of ${st.attempts_1h}`;
    const err = st.last_error;
    const lastError = err ? el("button", { type: "button", className: "link",
      textContent: `${err.status ? "HTTP " + err.status : err.error || err.outcome} ${err.time || ""}`,
      title: err.error || "", onclick: () => showTrace(err.event_id) }) : "-";
    const actions = el("td", { className: "row-actions" },
      el("button", { type: "button", textContent: "Edit", onclick: () => openEditor(d) }),
      el("button", { type: "button", textContent: d.enabled ? "Disable" : "Enable",
        onclick: () => toggle(d) }),
      el("button", { type: "button", textContent: "Test", onclick: () => pickTest(d.name) }),
      el("button", { type: "button", textContent: "Delete", onclick: () => removeDest(d) }));
    const row = el("tr", { className: "dest-row" }, el("td", { className: "d-name" }, d.name),
      el("td", {}, d.scope),
      el("td", { className: "d-events", title: d.filter ? JSON.stringify(d.filter) : "" }, events),
      el("td", { className: "url" }, d.url),
      el("td", {}, d.enabled ? "yes" : "no"),
      el("td", { className: "d-circuit circuit-" + (st.circuit || "closed") }, st.circuit || "closed"),
      el("td", { className: "d-waiting" }, st.waiting ?? 0),
      el("td", { className: "d-parked" }, st.parked ?? 0),
      el("td", { className: "d-rate" }, rate),
      el("td", { className: "d-outcome " + (a ? a.outcome : "") }, outcome),
      el("td", { className: "d-error" }, lastError), actions);
    row.dataset.name = d.name;
    tbody.append(row);
  });
  fillDestinationSelects();
}

function fillDestinationSelects() {
  const testSel = $("#t-dest");
  const chosenTest = testSel.value;
  testSel.replaceChildren(...state.dests.map((d) => el("option", { value: d.name }, d.name)));
  if (state.dests.some((d) => d.name === chosenTest)) testSel.value = chosenTest;
  const replaySel = $("#r-dest");
  const chosenReplay = replaySel.value;
  replaySel.replaceChildren(...state.dests.map((d) => el("option", { value: d.name }, d.name)));
  if (state.dests.some((d) => d.name === chosenReplay)) replaySel.value = chosenReplay;
  if (!$("#r-type").options.length) {
    $("#r-type").replaceChildren(el("option", { value: "" }, "every type"),
      ...EVENT_TYPES.map((t) => el("option", { value: t }, t)));
  }
  for (const filter of [$("#a-dest"), $("#dl-dest")]) {
    const chosen = filter.value;
    filter.replaceChildren(el("option", { value: "" }, "all destinations"),
      ...state.dests.map((d) => el("option", { value: d.name }, d.name)));
    if (state.dests.some((d) => d.name === chosen)) filter.value = chosen;
  }
  fillTestTypes();
}

function fillTestTypes() {
  const d = state.dests.find((x) => x.name === $("#t-dest").value);
  const types = !d ? [] : d.events === "all" ? EVENT_TYPES : d.events;
  const chosen = $("#t-type").value;
  $("#t-type").replaceChildren(...types.map((t) => el("option", { value: t }, t)));
  if (types.includes(chosen)) $("#t-type").value = chosen;
}
$("#t-dest").addEventListener("change", fillTestTypes);

async function toggle(d) {
  await api("POST", `/api/destinations/${encodeURIComponent(d.name)}/${d.enabled ? "disable" : "enable"}`);
  await loadDestinations();
}

async function removeDest(d) {
  if (!confirm(`Delete destination ${d.name}?`)) return;
  await api("DELETE", "/api/destinations/" + encodeURIComponent(d.name));
  await loadDestinations();
}

function pickTest(name) {
  $("#t-dest").value = name;
  fillTestTypes();
  $("#test-panel").scrollIntoView();
}

// -- the add / edit form -------------------------------------------------------------------
function buildEventBoxes() {
  $("#f-events").replaceChildren(...EVENT_TYPES.map((t) => el("label", { className: "inline" },
    el("input", { type: "checkbox", name: "events", value: t, onchange: eventsChanged }), " " + t)));
}

function chosenEvents() {
  if ($("#f-events-all").checked) return EVENT_TYPES.slice();
  return [...document.querySelectorAll("input[name=events]:checked")].map((b) => b.value);
}

function eventsChanged() {
  const all = $("#f-events-all").checked;
  document.querySelectorAll("input[name=events]").forEach((b) => { b.disabled = all; });
  renderPerTypeParams(collectParamsMap());
  renderParamHelp();
}
$("#f-events-all").addEventListener("change", eventsChanged);

function renderParamHelp() {
  const types = chosenEvents();
  const list = $("#param-list");
  list.replaceChildren();
  if (!types.length) {
    $("#param-help-note").textContent = "Choose event types to see their parameters.";
    return;
  }
  $("#param-help-note").textContent = "Placeholders valid for every chosen event type " +
    `(${types.length === EVENT_TYPES.length ? "all" : types.join(", ")}); click one to insert it.`;
  const first = state.parameters[types[0]] || {};
  for (const [name, description] of Object.entries(first)) {
    if (!types.every((t) => name in (state.parameters[t] || {}))) continue;
    const button = el("button", { type: "button", className: "ph", textContent: `%${name}%`,
      onclick: () => insertPlaceholder(name) });
    button.dataset.name = name;
    list.append(el("li", {}, button, " ", el("span", { className: "muted" }, description)));
  }
}

function insertPlaceholder(name) {
  const input = state.lastParamInput && !state.lastParamInput.closest("[hidden]")
    ? state.lastParamInput
    : document.querySelector("#params-per:not([hidden]) .param-input") || $("#f-params");
  const text = `%${name}%`;
  const start = input.selectionStart ?? input.value.length;
  const end = input.selectionEnd ?? input.value.length;
  input.value = input.value.slice(0, start) + text + input.value.slice(end);
  input.focus();
  input.setSelectionRange(start + text.length, start + text.length);
}
document.addEventListener("focusin", (ev) => {
  if (ev.target.classList && ev.target.classList.contains("param-input")) {
    state.lastParamInput = ev.target;
  }
});

function paramsMode() { return $("#f-params-per").checked ? "per" : "one"; }
function setParamsMode(mode) {
  $("#f-params-per").checked = mode === "per";
  $("#f-params-one").checked = mode !== "per";
  $("#params-one").hidden = mode === "per";
  $("#params-per").hidden = mode !== "per";
}
document.querySelectorAll("input[name=params-mode]").forEach((r) =>
  r.addEventListener("change", () => { setParamsMode(paramsMode()); renderPerTypeParams(collectParamsMap()); }));

function collectParamsMap() {
  const map = {};
  document.querySelectorAll("#params-per input[data-type]").forEach((i) => { map[i.dataset.type] = i.value; });
  return map;
}

function renderPerTypeParams(values) {
  $("#params-per").replaceChildren(...chosenEvents().map((t) => el("div", { className: "per-type" },
    el("label", {}, t), el("input", { className: "wide param-input", value: values[t] || "",
      ariaLabel: "URL parameters for " + t }, ),
    el("div", { className: "err" }))));
  document.querySelectorAll("#params-per .per-type").forEach((row, i) => {
    const t = chosenEvents()[i];
    row.querySelector("input").dataset.type = t;
    row.querySelector(".err").dataset.errorFor = "params." + t;
  });
}

function addHeaderRow(name = "", value = "", secret = false) {
  const row = el("div", { className: "header-row" },
    el("input", { className: "h-name", placeholder: "Name", value: name, ariaLabel: "header name" }),
    el("input", { className: "h-value", placeholder: secret ? "(unchanged)" : "value",
      value: secret ? "" : value, ariaLabel: "header value" }),
    el("label", { className: "inline" }, el("input", { type: "checkbox", className: "h-secret",
      checked: secret }), " secret"),
    el("button", { type: "button", textContent: "Remove", onclick: () => row.remove() }));
  $("#f-headers").append(row);
}
$("#add-header").addEventListener("click", () => addHeaderRow());

function clearErrors() {
  document.querySelectorAll("[data-error-for]").forEach((e) => { e.textContent = ""; });
  document.querySelectorAll(".invalid").forEach((e) => e.classList.remove("invalid"));
  $("#form-errors").textContent = "";
}

function showErrors(errors) {
  for (const error of errors) {
    const parts = (error.field || "").split(".");
    let target = null;
    for (let n = parts.length; n > 0 && !target; n--) {
      target = document.querySelector(`#dest-form [data-error-for="${CSS.escape(parts.slice(0, n).join("."))}"]`);
    }
    target = target || $("#form-errors");
    target.textContent = (target.textContent ? target.textContent + " " : "") + error.message;
    const input = target.parentElement
      && target.parentElement.querySelector("input, select, textarea");
    if (input) input.classList.add("invalid");
  }
}

function openEditor(d) {
  state.editing = d ? d.name : null;
  clearErrors();
  $("#editor-title").textContent = d ? `Edit destination ${d.name}` : "Add destination";
  $("#editor").hidden = false;
  fillForm(d || { events: [], scope: "global", url: "", params: "", method: "GET",
    results: ["success", "failure"], enabled: true, ordered: false });
  // what the form shows now: a save sends only the fields that differ from it (PATCH)
  state.original = formBody();
  $("#f-message").textContent = "";
  $("#f-name").disabled = !!d;
  $("#editor").scrollIntoView();
}
$("#add-dest").addEventListener("click", () => openEditor(null));
$("#f-cancel").addEventListener("click", () => { $("#editor").hidden = true; });

function fillForm(d) {
  $("#f-name").value = d.name || "";
  $("#f-preset").value = d.preset || "";
  const all = d.events === "all";
  $("#f-events-all").checked = all;
  document.querySelectorAll("input[name=events]").forEach((b) => {
    b.checked = !all && (d.events || []).includes(b.value);
  });
  const [kind, ...rest] = (d.scope || "global").split(":");
  $("#f-scope-kind").value = kind;
  $("#f-scope-value").value = rest.join(":");
  $("#f-url").value = d.url || "";
  const perType = d.params && typeof d.params === "object";
  setParamsMode(perType ? "per" : "one");
  $("#f-params").value = perType ? "" : (d.params || "");
  $("#f-method").value = d.method || "GET";
  document.querySelectorAll("input[name=results]").forEach((b) => {
    b.checked = (d.results || ["success", "failure"]).includes(b.value);
  });
  $("#f-headers").replaceChildren();
  for (const [name, spec] of Object.entries(d.headers || {})) {
    if (spec && typeof spec === "object") addHeaderRow(name, "", true);
    else addHeaderRow(name, spec, false);
  }
  const retry = d.retry || {};
  $("#f-retry-policy").value = retry.policy === "standard" ? "standard" : "exponential";
  $("#f-retry-max").value = retry.max_attempts ?? 8;
  $("#f-retry-backoff").value = retry.backoff_s ?? 1;
  $("#f-retry-backoff-max").value = retry.backoff_max_s ?? 600;
  $("#f-timeout").value = d.timeout_s ?? 10;
  const tls = d.tls || {};
  $("#f-tls-verify").checked = tls.verify !== false;
  $("#f-tls-ca").value = tls.ca_bundle || "";
  $("#f-tls-cert").value = tls.client_cert || "";
  $("#f-tls-key").value = tls.client_key || "";
  $("#f-allow-cidrs").value = (d.allow_cidrs || []).join(", ");
  $("#f-deny-cidrs").value = (d.deny_cidrs || []).join(", ");
  const circuit = d.circuit || {};
  $("#f-circuit-failures").value = circuit.failures ?? 5;
  $("#f-circuit-reset").value = circuit.reset_s ?? 30;
  $("#f-rate").value = d.rate_limit_per_s ?? "";
  $("#f-in-flight").value = d.max_in_flight ?? "";
  $("#f-on-dead-letter").value = d.on_dead_letter === "hold" ? "hold" : "continue";
  $("#f-expire").value = expireText(d.expire_after_s);
  $("#f-secret").value = "";
  $("#f-secret-clear").checked = false;
  const hasSecret = d.secret === MASK;
  $("#secret-clear-label").hidden = !hasSecret;
  $("#secret-note").textContent = hasSecret ? "A secret is stored; leave empty to keep it." : "";
  $("#f-ordered").checked = !!d.ordered;
  $("#f-filter").value = d.filter ? JSON.stringify(d.filter, null, 2) : "";
  $("#f-auth").value = d.auth ? JSON.stringify(d.auth, null, 2) : "";
  $("#f-enabled").checked = d.enabled !== false;
  eventsChanged();
  if (perType) renderPerTypeParams(d.params);
}

$("#f-preset").addEventListener("change", () => {
  const preset = state.presets[$("#f-preset").value];
  if (!preset) return;
  const current = formBody();
  fillForm({ ...current, ...preset, name: current.name, url: current.url,
    preset: $("#f-preset").value });
});

function number(sel) {
  const raw = $(sel).value.trim();
  return raw === "" ? null : Number(raw);
}

// expire_after_s as the form shows it: "120", or "TYPE=seconds, TYPE=seconds"
function expireText(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return String(value);
  return Object.entries(value).map(([type, s]) => `${type}=${s}`).join(", ");
}

// ... and back; what does not read as either goes as typed, for the server to refuse
function expireValue(sel) {
  const raw = $(sel).value.trim();
  if (raw === "") return null;
  if (!raw.includes("=")) return Number.isNaN(Number(raw)) ? raw : Number(raw);
  const out = {};
  for (const part of raw.split(",")) {
    const [type, s, extra] = part.split("=").map((x) => x.trim());
    if (!type || !s || extra !== undefined || Number.isNaN(Number(s))) return raw;
    out[type] = Number(s);
  }
  return out;
}

function text(sel) {
  const raw = $(sel).value.trim();
  return raw === "" ? null : raw;
}

// The filter textarea: null when empty, else its JSON (the text itself when it is not JSON;
// the submit handler refuses that before anything is sent).
function filterValue(sel = "#f-filter") {
  const raw = $(sel).value.trim();
  if (raw === "") return null;
  try { return JSON.parse(raw); } catch { return raw; }
}

function filterJsonError(sel = "#f-filter") {
  const raw = $(sel).value.trim();
  if (raw === "") return null;
  try { JSON.parse(raw); return null; } catch (e) { return e.message; }
}

function cidrs(sel) {
  return $(sel).value.split(/[\s,]+/).filter((c) => c !== "");
}

// A new destination: fields left empty are not sent (they take their defaults).
function withoutNulls(value) {
  if (!isObject(value)) return value;
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== null)
    .map(([k, v]) => [k, withoutNulls(v)]));
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

// The JSON merge patch (RFC 7396) turning `before` into `after`: changed keys only, objects
// per key, a key that is gone as null.
function mergePatch(before, after) {
  const patch = {};
  for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const a = before[key], b = after[key];
    if (JSON.stringify(a) === JSON.stringify(b)) continue;
    if (b === undefined) patch[key] = null;
    else if (isObject(a) && isObject(b)) patch[key] = mergePatch(a, b);
    else patch[key] = b;
  }
  return patch;
}

function formBody() {
  const kind = $("#f-scope-kind").value;
  const body = {
    name: $("#f-name").value.trim(),
    events: $("#f-events-all").checked ? "all" : chosenEvents(),
    scope: kind === "global" ? "global" : `${kind}:${$("#f-scope-value").value.trim()}`,
    url: $("#f-url").value.trim(),
    params: paramsMode() === "per" ? collectParamsMap() : $("#f-params").value,
    method: $("#f-method").value,
    results: [...document.querySelectorAll("input[name=results]:checked")].map((b) => b.value),
    ordered: $("#f-ordered").checked,
    enabled: $("#f-enabled").checked,
    timeout_s: number("#f-timeout"),
    tls: { verify: $("#f-tls-verify").checked, ca_bundle: text("#f-tls-ca"),
      client_cert: text("#f-tls-cert"), client_key: text("#f-tls-key") },
    allow_cidrs: cidrs("#f-allow-cidrs"),
    deny_cidrs: cidrs("#f-deny-cidrs"),
    circuit: { failures: number("#f-circuit-failures"), reset_s: number("#f-circuit-reset") },
    rate_limit_per_s: number("#f-rate"),
    max_in_flight: number("#f-in-flight"),
    on_dead_letter: $("#f-on-dead-letter").value,
    expire_after_s: expireValue("#f-expire"),
    filter: filterValue(),
    auth: filterValue("#f-auth"),
  };
  if ($("#f-preset").value) body.preset = $("#f-preset").value;
  const headers = {};
  document.querySelectorAll("#f-headers .header-row").forEach((row) => {
    const name = row.querySelector(".h-name").value.trim();
    if (!name) return;
    const value = row.querySelector(".h-value").value;
    headers[name] = row.querySelector(".h-secret").checked
      ? { value: value === "" ? MASK : value, secret: true } : value;
  });
  body.headers = headers;
  body.retry = { max_attempts: number("#f-retry-max"), backoff_s: number("#f-retry-backoff"),
    backoff_max_s: number("#f-retry-backoff-max"), policy: $("#f-retry-policy").value };
  const secret = $("#f-secret").value;
  if ($("#f-secret-clear").checked) body.secret = null;
  else if (secret) body.secret = secret;
  return body;
}

$("#dest-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  clearErrors();
  for (const field of ["filter", "auth"]) {
    const badJson = filterJsonError(`#f-${field}`);
    if (badJson) {
      showErrors([{ field, message: `${field}: not valid JSON (${badJson})` }]);
      return;
    }
  }
  const body = formBody();
  try {
    if (state.editing) {
      const patch = mergePatch(state.original, body);
      if (!Object.keys(patch).length) {
        $("#f-message").textContent = "Nothing changed.";
        return;
      }
      await api("PATCH", "/api/destinations/" + encodeURIComponent(state.editing), patch);
    } else {
      await api("POST", "/api/destinations", withoutNulls(body));
    }
  } catch (e) {
    showErrors(e.errors.length ? e.errors : [{ field: "", message: e.message }]);
    return;
  }
  $("#editor").hidden = true;
  await loadDestinations();
  pickTest(body.name);
});

// -- test notification ---------------------------------------------------------------------
$("#t-send").addEventListener("click", async () => {
  const name = $("#t-dest").value;
  $("#t-error").textContent = "";
  $("#t-result").hidden = true;
  if (!name) { $("#t-error").textContent = "Add a destination first."; return; }
  $("#t-send").disabled = true;
  try {
    const r = await api("POST", `/api/destinations/${encodeURIComponent(name)}/test`,
      { type: $("#t-type").value });
    $("#t-url").textContent = r.url;
    $("#t-outcome").textContent = r.outcome + (r.filter_passes === false
      ? " (sent as a test; the sample event does not pass this destination's filter)" : "");
    $("#t-outcome").className = r.outcome;
    $("#t-status").textContent = r.status ? `HTTP ${r.status}` : (r.error || "");
    $("#t-latency").textContent = `${r.latency_ms} ms`;
    $("#t-result").hidden = false;
  } catch (e) {
    $("#t-error").textContent = e.message;
  } finally {
    $("#t-send").disabled = false;
  }
  await refreshAll();
});

// -- replay retained events (a backfill: POST /api/replays, then poll its status) -------------
function replayBody(dryRun) {
  const body = { destination: $("#r-dest").value, dry_run: dryRun };
  for (const [field, sel] of [["since", "#r-since"], ["until", "#r-until"],
    ["account", "#r-account"], ["ucid", "#r-ucid"], ["type", "#r-type"]]) {
    const value = $(sel).value.trim();
    if (value) body[field] = value;
  }
  return body;
}

function replaySummary(r) {
  const types = Object.entries(r.per_type || {}).map(([t, n]) => `${t}: ${n}`).join(", ");
  return `${r.notifications} notification(s) for ${r.events} event(s)` +
    (types ? ` (${types})` : "") + `; looked at ${r.scanned} retained event(s)`;
}

async function startReplay(dryRun) {
  $("#r-error").textContent = "";
  $("#r-result").textContent = "";
  if (!$("#r-dest").value) { $("#r-error").textContent = "Add a destination first."; return; }
  try {
    const r = await api("POST", "/api/replays", replayBody(dryRun));
    if (dryRun) { $("#r-result").textContent = "Would send " + replaySummary(r) + "."; return; }
    $("#r-go").disabled = true;
    for (;;) {
      const job = await api("GET", r.url);
      $("#r-result").textContent = `Replay ${job.id}: ${job.state}, ` + replaySummary(job);
      if (job.state !== "running") break;
      await new Promise((done) => setTimeout(done, 1000));
    }
  } catch (e) {
    $("#r-error").textContent = e.message;
  } finally {
    $("#r-go").disabled = false;
  }
}
$("#r-dry").addEventListener("click", () => startReplay(true));
$("#r-go").addEventListener("click", () => startReplay(false));

// -- attempts and dead letters ---------------------------------------------------------------
async function loadAttempts() {
  const dest = $("#a-dest").value;
  const query = `limit=${PAGE}&offset=${state.attemptsOffset}` +
    (dest ? "&destination=" + encodeURIComponent(dest) : "");
  const rows = await api("GET", "/api/attempts?" + query);
  $("#attempts-table tbody").replaceChildren(...rows.map((a) => el("tr", { className: "attempt-row" },
    el("td", {}, a.time), el("td", {}, a.destination), el("td", {}, a.attempt),
    el("td", { title: a.response || "" }, a.status ? `HTTP ${a.status}` : (a.error || "")),
    el("td", {}, `${Math.round(a.latency_ms)} ms`), el("td", { className: a.outcome }, a.outcome),
    el("td", { className: "mono response" }, (a.response || "").slice(0, 2048)),
    el("td", { className: "mono" }, a.notification_id))));
  $("#a-older").disabled = rows.length < PAGE;
  $("#a-newer").disabled = state.attemptsOffset === 0;
}
$("#a-dest").addEventListener("change", () => { state.attemptsOffset = 0; loadAttempts(); });
$("#a-refresh").addEventListener("click", () => refreshAll());
$("#a-older").addEventListener("click", () => { state.attemptsOffset += PAGE; loadAttempts(); });
$("#a-newer").addEventListener("click", () => {
  state.attemptsOffset = Math.max(0, state.attemptsOffset - PAGE); loadAttempts();
});

async function loadDeadLetters() {
  const dest = $("#dl-dest").value;
  const query = `limit=${PAGE}&offset=${state.deadOffset}` +
    (dest ? "&destination=" + encodeURIComponent(dest) : "");
  const rows = await api("GET", "/api/dead-letters?" + query);
  $("#dl-older").disabled = rows.length < PAGE;
  $("#dl-newer").disabled = state.deadOffset === 0;
  $("#dl-table tbody").replaceChildren(...rows.map((d) => el("tr", { className: "dl-row" },
    el("td", {}, d.time), el("td", {}, d.destination),
    el("td", { className: "mono" }, el("button", { type: "button", className: "link mono",
      textContent: d.event_id, onclick: () => showTrace(d.event_id) })),
    el("td", {}, (d.attempts || []).length), el("td", {}, d.reason),
    el("td", {}, el("button", { type: "button", textContent: "Replay",
      onclick: () => replay(`/api/dead-letters/${d.id}/replay`, undefined) })))));
  $("#dl-replay-dest").disabled = !dest;
}

async function replay(path, body) {
  const r = await api("POST", path, body);
  $("#dl-message").textContent = `Replayed ${r.replayed} dead letter(s).`;
  await refreshAll();
}
$("#dl-replay-all").addEventListener("click", () => replay("/api/dead-letters/replay", {}));
$("#dl-replay-dest").addEventListener("click", () =>
  replay("/api/dead-letters/replay", { destination: $("#dl-dest").value }));
$("#dl-dest").addEventListener("change", () => { state.deadOffset = 0; loadDeadLetters(); });
$("#dl-older").addEventListener("click", () => { state.deadOffset += PAGE; loadDeadLetters(); });
$("#dl-newer").addEventListener("click", () => {
  state.deadOffset = Math.max(0, state.deadOffset - PAGE); loadDeadLetters();
});

// -- trace: by event id, or every event of a UCID --------------------------------------------
async function showTrace(query) {
  $("#trace-q").value = query;
  $("#trace-error").textContent = "";
  $("#trace-result").replaceChildren();
  try {
    await api("GET", "/api/events/" + encodeURIComponent(query)).then((t) => renderTrace([t]));
  } catch (e) {
    if (e.status !== 404) { $("#trace-error").textContent = e.message; return; }
    let ids;
    try {
      ids = await api("GET", "/api/events?ucid=" + encodeURIComponent(query));
    } catch (e2) {
      $("#trace-error").textContent = `No event with id ${query}, and ${e2.message}`;
      return;
    }
    renderTrace(await Promise.all(ids.map((id) => api("GET", "/api/events/" + encodeURIComponent(id)))));
  }
  $("#trace-panel").scrollIntoView();
}

function traceRow(n) {
  const attempts = (n.attempts || []).map((a) =>
    `#${a.attempt}: ${a.status ? "HTTP " + a.status : a.error || ""}`).join("; ");
  return el("tr", { className: "trace-row" }, el("td", {}, n.destination),
    el("td", { className: n.state }, n.state + (n.waiting ? ` (${n.waiting})` : "")),
    el("td", {}, attempts || "none"));
}

function renderTrace(traces) {
  $("#trace-result").replaceChildren(...traces.map((t) => {
    const head = el("thead", {}, el("tr", {}, el("th", {}, "Destination"),
      el("th", {}, "State"), el("th", {}, "Attempts")));
    const body = el("tbody", {}, ...t.notifications.map(traceRow));
    return el("div", { className: "trace" },
      el("h3", {}, `${t.type || "event"} `, el("span", { className: "mono" }, t.event_id)),
      el("table", { className: "trace-table" }, head, body));
  }));
}
$("#trace-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = $("#trace-q").value.trim();
  if (q) showTrace(q);
});

// -- auto-refresh (not while a form is open, nor while the last refresh runs) ---------------
setInterval(async () => {
  if (!$("#auto-refresh").checked || $("#app").hidden || !$("#editor").hidden
      || state.refreshing) return;
  state.refreshing = true;
  try { await refreshAll(); } catch (e) { /* the next tick tries again */ }
  finally { state.refreshing = false; }
}, REFRESH_MS);
$("#dl-purge").addEventListener("click", async () => {
  if (!confirm("Delete every dead letter for good?")) return;
  const r = await api("DELETE", "/api/dead-letters");
  $("#dl-message").textContent = `Purged ${r.purged} dead letter(s).`;
  await loadDeadLetters();
});

buildEventBoxes();
start();
