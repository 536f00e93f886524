// Convergio Voice teacher console: a teacher's classrooms, and each classroom's student sessions
// live. Updates are pushed: the classroom's server-sent events are read with fetch() and a stream
// reader (so the bearer token goes in a header, never in the address), never polled.
//
// Screen readers: headings and landmarks for every part; one polite live region (#announce) says
// only what a teacher must not miss (a student joins or leaves, a safety flag, the result of the
// teacher's own action). Transcripts, latency and usage change all the time and are never
// announced; they are there to read. Errors of the teacher's own actions use role="alert".
// The token lives in this tab only (sessionStorage).

const $ = (id) => document.getElementById(id);
const ui = {
  signOut: $("sign-out"), announce: $("announce"), error: $("error"),
  signinView: $("signin-view"), signinHeading: $("signin-heading"), signinForm: $("signin-form"),
  username: $("username"), password: $("password"),
  listView: $("list-view"), listHeading: $("list-heading"), list: $("classroom-list"), listEmpty: $("list-empty"),
  createForm: $("create-form"), createName: $("create-name"), personaChoices: $("persona-choices"),
  capStt: $("create-cap-stt"), capLlm: $("create-cap-llm"), capTts: $("create-cap-tts"),
  patience: $("create-patience"), retention: $("create-retention"), createSubmit: $("create-submit"),
  classroomView: $("classroom-view"), classroomHeading: $("classroom-heading"), classroomState: $("classroom-state"),
  backToList: $("back-to-list"), joinCode: $("join-code"), joinHelp: $("join-help"), codePanel: $("code-panel"),
  streamStatus: $("stream-status"), sessionsSummary: $("sessions-summary"), sessions: $("sessions"),
  settings: $("settings"), closePanel: $("close-panel"), closeButton: $("close-classroom"),
  closeDialog: $("close-dialog"), closeDialogText: $("close-dialog-text"),
  closeCancel: $("close-cancel"), closeConfirm: $("close-confirm"),
};

const TOKEN_KEY = "convergio.console.token";
let accessToken = sessionStorage.getItem(TOKEN_KEY);

const state = {
  view: "loading",
  classrooms: [],
  classroom: null,
  sessions: new Map(),   // session_id -> {view: SessionView, card: {...}}
  personas: new Map(),   // persona id -> {id, name, subject}
  stream: "idle",         // idle | connecting | open | lost
  announcements: [],      // every polite announcement, for tests and debugging
  safetyShownAt: [],      // Date.now() of each safety flag put on the page
};
// Exposed for tests and for anyone debugging the console (without the token).
window.convergioConsole = state;

let streamAbort = null;
let cardCounter = 0;

// ------------------------------------------------------------------------------ helpers
class SignedOut extends Error {}
class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

function authHeaders() {
  return accessToken ? { authorization: `Bearer ${accessToken}` } : {};
}

function keepToken(token) {
  accessToken = token;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body.error && body.error.message) return body.error.message;
    if (typeof body.detail === "string") return body.detail;
  } catch (error) { /* not JSON */ }
  return `HTTP ${response.status}`;
}

async function api(method, path, body) {
  const headers = { ...authHeaders() };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    signOut(accessToken ? "Your sign-in has expired. Sign in again." : "Sign in first.");
    throw new SignedOut();
  }
  if (!response.ok) throw new ApiError(await errorMessage(response), response.status);
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

// One polite announcement at a time; several in the same moment are said together, in order.
let pending = [];
function announce(text) {
  state.announcements.push(text);
  pending.push(text);
  if (pending.length > 1) return;
  setTimeout(() => {
    const said = pending.join(" ");
    pending = [];
    // A repeat of the same words would not be read again: clear first, then set.
    ui.announce.textContent = "";
    requestAnimationFrame(() => { ui.announce.textContent = said; });
  }, 50);
}

function showError(text) {
  ui.error.textContent = text || "";
}

function reportFailure(error, what) {
  if (error instanceof SignedOut) return;
  showError(`${what}: ${error.message}`);
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function hiddenText(text) {
  return el("span", { class: "visually-hidden", text });
}

function time(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function number(value) {
  return Number(value).toLocaleString("en");
}

function seconds(ms) {
  return `${(ms / 1000).toFixed(1)} s`;
}

function personaText(id) {
  const persona = state.personas.get(id);
  return persona ? `${persona.name} (${persona.subject})` : id;
}

function studentName(view) {
  return view.nickname || `Student ${String(view.student_id || "").slice(-4) || "?"}`;
}

// ------------------------------------------------------------------------------ views
const VIEWS = { signin: ui.signinView, list: ui.listView, classroom: ui.classroomView };
const TITLES = { signin: "Sign in", list: "Your classrooms", classroom: "Classroom" };

function showView(name, focus) {
  state.view = name;
  document.body.dataset.view = name;
  for (const [key, section] of Object.entries(VIEWS)) section.hidden = key !== name;
  ui.signOut.hidden = name === "signin";
  const heading = { signin: ui.signinHeading, list: ui.listHeading, classroom: ui.classroomHeading }[name];
  const title = name === "classroom" && state.classroom ? state.classroom.name : TITLES[name];
  document.title = `${title} – Convergio Voice teacher console`;
  if (focus) heading.focus();
}

function signOut(message) {
  stopStream();
  keepToken(null);
  state.classroom = null;
  state.sessions.clear();
  ui.sessions.replaceChildren();
  showView("signin", true);
  showError(message || "");
}

// The address says where the teacher is: "#classroom/<id>" or the list. Back and forward work.
function routeTarget() {
  const match = location.hash.match(/^#classroom\/(.+)$/);
  return match ? decodeURIComponent(match[1]) : null;
}

let navigatedByUser = false;
async function route() {
  const focus = navigatedByUser;
  navigatedByUser = true;  // after the first load, every route change comes from the teacher
  if (!accessToken) {
    stopStream();
    showView("signin", focus);
    return;
  }
  const id = routeTarget();
  if (id) await openClassroom(id, focus);
  else await openList(focus);
}

// ------------------------------------------------------------------------------ sign-in
ui.signinForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const username = ui.username.value.trim();
  if (!username || !ui.password.value) {
    showError("Enter your username and password.");
    (username ? ui.password : ui.username).focus();
    return;
  }
  let body;
  try {
    const response = await fetch("/v1/auth/sign-in", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ username, password: ui.password.value }),
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    body = await response.json();
  } catch (error) {
    ui.password.value = "";
    showError(`Could not sign in: ${error.message}`);
    ui.password.focus();
    return;
  }
  ui.password.value = "";
  if (body.role !== "teacher" && body.role !== "admin") {
    showError("This console is for teachers and admins. Students use the student page.");
    ui.username.focus();
    return;
  }
  keepToken(body.access_token);
  showError("");
  announce("Signed in.");
  await route();
});

ui.signOut.addEventListener("click", async () => {
  try {
    await fetch("/v1/auth/sign-out", { method: "POST", headers: authHeaders() });
  } catch (error) { /* signed out here either way */ }
  signOut("");
  announce("Signed out.");
  if (location.hash) history.pushState(null, "", location.pathname);
});

// ------------------------------------------------------------------------------ classroom list
async function loadPersonas() {
  if (state.personas.size) return;
  const personas = await api("GET", "/v1/personas");
  for (const p of personas) state.personas.set(p.id, p);
  ui.personaChoices.replaceChildren();
  for (const p of personas) {
    const id = `persona-${p.id}`;
    ui.personaChoices.append(el("div", { class: "choice" },
      el("input", { type: "checkbox", id, name: "personas", value: p.id, checked: true }),
      el("label", { for: id, text: `${p.name}, ${p.subject}` })));
  }
}

async function openList(focus) {
  stopStream();
  state.classroom = null;
  try {
    await loadPersonas();
    state.classrooms = await api("GET", "/api/v1/classrooms");
  } catch (error) {
    if (error instanceof ApiError && error.status === 403) {
      signOut("This console is for teachers and admins. Sign in with a teacher's account.");
      return;
    }
    showView("list", focus);
    reportFailure(error, "Could not load your classrooms");
    return;
  }
  renderList();
  showView("list", focus);
}

function renderList() {
  const rooms = [...state.classrooms].sort((a, b) =>
    (!!a.closed_at - !!b.closed_at) || String(b.created_at).localeCompare(String(a.created_at)));
  ui.list.replaceChildren(...rooms.map((room) => el("li", { class: room.closed_at ? "closed" : "open" },
    el("a", { href: `#classroom/${encodeURIComponent(room.id)}`, text: room.name }),
    el("span", { class: "hint", text: room.closed_at
      ? ` Closed. Code ${room.join_code} no longer works.`
      : ` Open. Join code ${room.join_code}.` }))));
  ui.listEmpty.hidden = rooms.length > 0;
}

function optionalWhole(input, label, scale = 1) {
  const raw = input.value.trim();
  if (raw === "") return null;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0 || (scale === 1 && !Number.isInteger(value))) {
    throw new FieldError(input, `${label} must be ${scale === 1 ? "a whole number" : "a number"} of 0 or more.`);
  }
  return Math.round(value * scale);
}

class FieldError extends Error {
  constructor(input, message) { super(message); this.input = input; }
}

function formInvalid(form, error) {
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  if (!error) return;
  error.input.setAttribute("aria-invalid", "true");
  showError(error.message);
  error.input.focus();
}

ui.createForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  let body;
  try {
    const name = ui.createName.value.trim();
    if (!name) throw new FieldError(ui.createName, "Give the classroom a name.");
    const retention = optionalWhole(ui.retention, "Days to keep transcripts");
    if (retention !== null && (retention < 1 || retention > 3650)) {
      throw new FieldError(ui.retention, "Days to keep transcripts must be between 1 and 3650.");
    }
    body = {
      name,
      personas: [...ui.personaChoices.querySelectorAll("input:checked")].map((box) => box.value),
      caps: {
        stt_audio_ms: optionalWhole(ui.capStt, "Speech listened to", 1000),
        llm_tokens: optionalWhole(ui.capLlm, "Answer tokens"),
        tts_chars: optionalWhole(ui.capTts, "Characters the tutor speaks"),
      },
      patience_ms: patienceMs(),
      retention_days: retention ?? 30,
    };
  } catch (error) {
    if (error instanceof FieldError) { formInvalid(ui.createForm, error); return; }
    throw error;
  }
  formInvalid(ui.createForm, null);
  ui.createSubmit.disabled = true;
  let room;
  try {
    room = await api("POST", "/api/v1/classrooms", body);
  } catch (error) {
    reportFailure(error, "Could not create the classroom");
    ui.createSubmit.disabled = false;
    return;
  } finally {
    ui.createSubmit.disabled = false;
  }
  showError("");
  ui.createForm.reset();
  for (const box of ui.personaChoices.querySelectorAll("input")) box.checked = true;
  announce(`Classroom ${room.name} created. Its join code is ${spell(room.join_code)}.`);
  state.classrooms.push(room);
  location.hash = `#classroom/${encodeURIComponent(room.id)}`;
});

function patienceMs() {
  const ms = optionalWhole(ui.patience, "End-of-turn patience", 1000);
  if (ms !== null && (ms < 150 || ms > 30000)) {
    throw new FieldError(ui.patience, "End-of-turn patience must be between 0.15 and 30 seconds.");
  }
  return ms;
}

// A code read out one character at a time ("K 7 P 2"), not as a word.
function spell(code) {
  return String(code).split("").join(" ");
}

// ------------------------------------------------------------------------------ one classroom
async function openClassroom(id, focus) {
  stopStream();
  state.sessions.clear();
  ui.sessions.replaceChildren();
  let room;
  try {
    if (!state.personas.size) await loadPersonas();
    room = await api("GET", `/api/v1/classrooms/${encodeURIComponent(id)}`);
  } catch (error) {
    if (error instanceof SignedOut) return;
    showView("list", false);
    reportFailure(error, "Could not open the classroom");
    openList(false);
    return;
  }
  showError("");
  state.classroom = room;
  renderClassroom();
  renderSummary();
  showView("classroom", focus);
  startStream(room.id);
}

function renderClassroom() {
  const room = state.classroom;
  ui.classroomHeading.textContent = room.name;
  document.title = `${room.name} – Convergio Voice teacher console`;
  const closed = !!room.closed_at;
  ui.classroomView.dataset.closed = String(closed);
  ui.classroomState.textContent = closed
    ? `Closed at ${time(room.closed_at)}. No one can join and no session runs.`
    : `Open since ${time(room.created_at)}.`;
  ui.joinCode.replaceChildren(hiddenText("The join code is "), el("span", { class: "code", text: room.join_code }));
  const home = `${location.origin}/`;
  const link = `${home}#join=${encodeURIComponent(room.join_code)}`;
  if (closed) {
    ui.joinHelp.textContent = "This code no longer works: the classroom is closed.";
  } else {
    ui.joinHelp.replaceChildren(
      "Students open ", el("strong", { text: home }), ", choose “Join your class” and type this code. ",
      "A nickname is optional. Or give them this link: ", el("a", { href: link, text: link }), ".");
  }
  ui.closeButton.hidden = closed;
  ui.closePanel.hidden = closed;
  const caps = room.caps || {};
  const rows = [
    ["Tutors", room.personas && room.personas.length ? room.personas.map(personaText).join(", ") : "Every tutor"],
    ["Speech listened to, per session", caps.stt_audio_ms == null ? "No limit" : seconds(caps.stt_audio_ms)],
    ["Answer tokens, per session", caps.llm_tokens == null ? "No limit" : number(caps.llm_tokens)],
    ["Characters spoken, per session", caps.tts_chars == null ? "No limit" : number(caps.tts_chars)],
    ["End-of-turn patience", room.patience_ms == null ? "The server's default" : seconds(room.patience_ms)],
    ["Transcripts kept for", `${room.retention_days} days`],
  ];
  ui.settings.replaceChildren(...rows.flatMap(([term, value]) => [el("dt", { text: term }), el("dd", { text: value })]));
  for (const entry of state.sessions.values()) renderControls(entry);
}

function renderSummary() {
  const views = [...state.sessions.values()].map((entry) => entry.view);
  const count = (status) => views.filter((v) => v.status === status).length;
  const flagged = views.filter((v) => (v.safety_flags || []).length).length;
  if (!views.length) {
    ui.sessionsSummary.textContent = state.classroom && state.classroom.closed_at
      ? "No sessions today."
      : "No students are in a session yet. Their sessions appear here as soon as they start.";
    return;
  }
  const parts = ["live", "paused", "ended"].filter((status) => count(status)).map((status) => `${count(status)} ${status}`);
  ui.sessionsSummary.textContent = `${views.length} session${views.length === 1 ? "" : "s"} today: ${parts.join(", ")}.` +
    (flagged ? ` ${flagged} with a safety flag.` : "");
}

// ------------------------------------------------------------------------------ live updates
function stopStream() {
  if (streamAbort) streamAbort.abort();
  streamAbort = null;
  state.stream = "idle";
}

function setStream(status) {
  const before = state.stream;
  state.stream = status;
  ui.streamStatus.dataset.state = status;
  ui.streamStatus.textContent = {
    connecting: "Connecting to live updates…",
    open: "Live updates on: this page changes as the sessions do.",
    lost: "Live updates were interrupted. Reconnecting…",
    stopped: "Live updates are off.",
  }[status];
  if (status === "lost" && before === "open") announce("Live updates were interrupted. Reconnecting.");
  if (status === "open" && before === "lost") announce("Live updates are back.");
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

function startStream(classroomId) {
  const abort = new AbortController();
  streamAbort = abort;
  readStream(classroomId, abort.signal);
}

async function readStream(classroomId, signal) {
  let delay = 1000;
  setStream("connecting");
  while (!signal.aborted) {
    try {
      const response = await fetch(`/api/v1/classrooms/${encodeURIComponent(classroomId)}/events`, {
        headers: { ...authHeaders(), accept: "text/event-stream" }, cache: "no-store", signal,
      });
      if (response.status === 401) { signOut("Your sign-in has expired. Sign in again."); return; }
      if (response.status === 403 || response.status === 404) {
        setStream("stopped");
        showError(`Live updates are not available: ${await errorMessage(response)}`);
        return;
      }
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      setStream("open");
      delay = 1000;
      await readEvents(response.body, signal);
    } catch (error) {
      if (signal.aborted) return;
    }
    if (signal.aborted) return;
    setStream("lost");
    await sleep(delay, signal);
    delay = Math.min(delay * 2, 15000);
  }
}

// Server-sent events: blocks separated by a blank line; "data:" lines carry the JSON, lines that
// start with ":" are comments (the keep-alive).
async function readEvents(body, signal) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  signal.addEventListener("abort", () => reader.cancel().catch(() => {}), { once: true });
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer = (buffer + value).replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, "")).join("\n");
      if (!data) continue;
      let event;
      try { event = JSON.parse(data); } catch (error) { continue; }
      try { onEvent(event); } catch (error) { console.error("console event", event.type, error); }
    }
  }
}

function onEvent(event) {
  const room = state.classroom;
  if (!room) return;
  if (event.type === "snapshot") {
    state.classroom = event.classroom || room;
    const keep = new Set();
    for (const view of event.sessions || []) { upsertSession(view); keep.add(view.session_id); }
    for (const [sid, entry] of state.sessions) {
      if (!keep.has(sid)) { entry.card.root.remove(); state.sessions.delete(sid); }
    }
    renderClassroom();
    renderSummary();
    return;
  }
  if (event.classroom_id && event.classroom_id !== room.id) return;
  if (event.type === "classroom.closed") {
    markClosed({ ...room, closed_at: room.closed_at || event.at || new Date().toISOString() });
    return;
  }
  if (event.type === "session.started") {
    const isNew = !state.sessions.has(event.session.session_id);
    const entry = upsertSession(event.session);
    renderSummary();
    if (isNew) announce(`${studentName(entry.view)} started a session with ${personaText(entry.view.persona)}.`);
    return;
  }
  const entry = state.sessions.get(event.session_id);
  if (!entry) return;  // a session the snapshot did not have yet: its session.started follows
  const view = entry.view;
  switch (event.type) {
    case "transcript":
      addLine(view, event);
      renderTranscript(entry);
      break;
    case "turn.latency": {
      const turns = view.turns || (view.turns = []);
      const turn = { turn_id: event.turn_id, status: event.status,
        voice_to_voice_ms: event.voice_to_voice_ms, voice_to_answer_ms: event.voice_to_answer_ms };
      const at = turns.findIndex((t) => t.turn_id === event.turn_id);
      if (at >= 0) turns[at] = turn; else turns.push(turn);
      renderLatency(entry);
      break;
    }
    case "usage":
      view.usage = event.usage;
      view.allowances = event.allowances || [];
      renderUsage(entry);
      break;
    case "budget":
      (view.budget_events || (view.budget_events = [])).push({
        turn_id: event.turn_id, stage: event.stage, budget_ms: event.budget_ms,
        elapsed_ms: event.elapsed_ms, action: event.action });
      renderBudget(entry);
      break;
    case "safety": {
      const flag = { turn_id: event.turn_id, category: event.category, action: event.action, direction: event.direction };
      (view.safety_flags || (view.safety_flags = [])).push(flag);
      renderFlags(entry);
      renderSummary();
      state.safetyShownAt.push(Date.now());
      announce(`Safety flag for ${studentName(view)}: ${CATEGORY[flag.category] || flag.category}, ` +
        `${DIRECTION[flag.direction] || ""}.`);
      break;
    }
    case "session.status": {
      const before = view.status;
      view.status = event.status;
      if (event.reason) view.end_reason = event.reason;
      renderStatus(entry);
      renderControls(entry);
      renderSummary();
      // Closing the classroom ends every session: that is said once, for the classroom.
      if (before !== event.status && event.reason !== "classroom_closed") announce(statusAnnouncement(view));
      break;
    }
    case "caps":
      view.caps = { ...(view.caps || {}), ...event.caps };
      renderUsage(entry);
      fillCapInputs(entry);
      break;
    case "guidance":
      entry.delivered = (entry.delivered || 0) + 1;
      break;
    default:
      break;
  }
}

function statusAnnouncement(view) {
  const name = studentName(view);
  if (view.status === "paused") return `${name}'s session is paused.`;
  if (view.status === "live") return `${name}'s session is running again.`;
  return `${name}'s session ended${END_REASON[view.end_reason] ? `: ${END_REASON[view.end_reason]}` : ""}.`;
}

// ------------------------------------------------------------------------------ session cards
const CATEGORY = {
  self_harm: "distress or self-harm", distress: "distress", violence: "violence or weapons",
  unsafe_request: "an unsafe request", sexual: "sexual content", personal_data: "personal data",
  cheating: "asking for answers to copy", role_change: "trying to change the tutor's role",
  prompt_leak: "the tutor's instructions", false_action: "a promise the tutor cannot keep",
};
const DIRECTION = { input: "in what the student said", output: "in the tutor's reply, replaced before it was heard" };
const SAFETY_ACTION = {
  redirect: "The tutor answered with its safe reply.", guide: "The tutor was steered.",
  replace: "The sentence was replaced.",
};
const STATUS_TEXT = { live: "Live", paused: "Paused", ended: "Ended" };
const END_REASON = {
  teacher: "you ended it", classroom_closed: "the classroom was closed", client: "the student left",
  server_shutdown: "the server restarted", error: "an error", cap_reached: "a limit was reached",
};
const STAGE = {
  endpointing: "Noticing the student had finished", stt: "Transcribing", llm_first_token: "The answer's first word",
  first_sentence: "The answer's first sentence", tts_first_audio: "The voice's first sound",
  voice_to_voice: "The whole reply",
};
const BUDGET_ACTION = {
  none: "noted only", filler: "a short filler was spoken", partial_transcript: "answered from the partial transcript",
  shorten: "the answer was shortened", fallback: "switched to the backup engine",
};

function upsertSession(view) {
  let entry = state.sessions.get(view.session_id);
  if (!entry) {
    entry = { view, card: buildCard(view), notes: [] };
    state.sessions.set(view.session_id, entry);
    // Newest first, so a session that just started is at the top.
    ui.sessions.prepend(entry.card.root);
  } else {
    entry.view = view;
  }
  for (const render of [renderStatus, renderFlags, renderTranscript, renderLatency, renderUsage, renderBudget,
    renderControls, fillCapInputs]) render(entry);
  return entry;
}

function section(headingText, id, ...children) {
  return el("section", { class: "part", "aria-labelledby": id },
    el("h5", { id, text: headingText }), ...children);
}

function buildCard(view) {
  const n = ++cardCounter;
  const name = studentName(view);
  const headingId = `session-${n}-heading`;
  const card = {};
  card.heading = el("h4", { id: headingId, tabindex: "-1" }, name,
    el("span", { class: "persona", text: ` with ${personaText(view.persona)}` }));
  card.status = el("p", { class: "session-status" });
  card.flagBadge = el("p", { class: "flag-badge", hidden: true });
  card.flagList = el("ul", { class: "flag-list" });
  card.flags = el("section", { class: "part flags", "aria-labelledby": `session-${n}-flags`, hidden: true },
    el("h5", { id: `session-${n}-flags`, text: "Safety flags" }), card.flagList);
  card.lines = el("ol", { class: "lines" });
  card.noLines = el("p", { class: "hint", text: "Nothing said yet." });
  card.transcript = el("div", { class: "transcript", tabindex: "0", role: "region",
    "aria-label": `Transcript of ${name}'s session` }, card.noLines, card.lines);
  card.latency = el("ol", { class: "latency-list" });
  card.noLatency = el("p", { class: "hint", text: "No turn finished yet." });
  card.usage = el("ul", { class: "usage-list" });
  card.budget = el("ul", { class: "budget-list" });
  card.noBudget = el("p", { class: "hint", text: "None: every turn was on time." });

  card.pause = el("button", { type: "button", class: "pause" });
  card.end = el("button", { type: "button", class: "danger" }, "End session", hiddenText(` of ${name}`));
  card.pause.addEventListener("click", () => togglePause(view.session_id));
  card.end.addEventListener("click", () => endSession(view.session_id));

  const noteId = `session-${n}-note`;
  card.note = el("input", { type: "text", id: noteId, maxlength: "200", autocomplete: "off",
    "aria-describedby": `${noteId}-help` });
  card.noteSend = el("button", { type: "submit" }, "Send note", hiddenText(` about ${name}`));
  card.notesSent = el("ul", { class: "notes-sent", "aria-label": `Notes you sent about ${name}` });
  card.noteForm = el("form", { class: "note-form", novalidate: true },
    el("label", { for: noteId }, "Guidance note for the tutor", hiddenText(` about ${name}`)),
    el("p", { id: `${noteId}-help`, class: "hint",
      text: "One line, up to 200 characters, for example “they are working on fractions; slow down”. " +
        "The tutor uses it from its next turn and never reads it out. It is recorded in the audit log." }),
    el("div", { class: "row" }, card.note, card.noteSend));
  card.noteForm.addEventListener("submit", (event) => { event.preventDefault(); sendNote(view.session_id); });

  card.capInputs = {};
  const capFields = [
    ["stt_audio_ms", "Speech listened to, in seconds", 1000],
    ["llm_tokens", "Answer tokens", 1],
    ["tts_chars", "Characters the tutor speaks", 1],
  ].map(([key, label, scale]) => {
    const id = `session-${n}-cap-${key}`;
    const input = el("input", { type: "number", id, min: "0", step: "1", inputmode: "numeric" });
    card.capInputs[key] = { input, label, scale };
    return el("div", { class: "field" }, el("label", { for: id, text: label }), input);
  });
  card.capsSave = el("button", { type: "submit" }, "Save limits", hiddenText(` for ${name}`));
  card.capsForm = el("form", { class: "caps-form", novalidate: true },
    el("fieldset", { "aria-describedby": `session-${n}-caps-help` },
      el("legend", {}, "Change this session's limits", hiddenText(` (${name})`)),
      el("p", { id: `session-${n}-caps-help`, class: "hint", text: "Leave a limit empty for no limit." }),
      ...capFields, card.capsSave));
  card.capsForm.addEventListener("submit", (event) => { event.preventDefault(); saveCaps(view.session_id); });

  card.root = el("article", { class: "session", "aria-labelledby": headingId, "data-session": view.session_id },
    el("div", { class: "session-head" }, card.heading, card.status, card.flagBadge),
    card.flags,
    el("div", { class: "parts" },
      section("Transcript, as heard", `session-${n}-transcript`, card.transcript),
      section("Latency per turn", `session-${n}-latency`, card.noLatency, card.latency),
      section("Usage against limits", `session-${n}-usage`, card.usage),
      section("Budget events", `session-${n}-budget`, card.noBudget, card.budget)),
    el("section", { class: "part controls", "aria-labelledby": `session-${n}-controls` },
      el("h5", { id: `session-${n}-controls`, text: "Controls" }),
      card.over = el("p", { class: "hint", text: "The session has ended: there is nothing more to control.", hidden: true }),
      card.controlsBody = el("div", {}, el("div", { class: "actions" }, card.pause, card.end), card.noteForm),
      card.notesSent,
      card.capsForm));
  return card;
}

function renderStatus(entry) {
  const { view, card } = entry;
  entry.card.root.dataset.status = view.status;
  const parts = [el("span", { class: `badge status-${view.status}`, text: STATUS_TEXT[view.status] || view.status })];
  let detail = ` Started at ${time(view.started_at)}.`;
  if (view.status === "paused") detail += " The tutor is not listening until you resume.";
  if (view.status === "ended" && END_REASON[view.end_reason]) detail += ` Ended: ${END_REASON[view.end_reason]}.`;
  parts.push(detail);
  card.status.replaceChildren(...parts);
}

function renderFlags(entry) {
  const flags = entry.view.safety_flags || [];
  const { card } = entry;
  card.flags.hidden = !flags.length;
  card.flagBadge.hidden = !flags.length;
  entry.card.root.classList.toggle("flagged", flags.length > 0);
  card.flagBadge.replaceChildren(el("span", { class: "flag-icon", "aria-hidden": "true", text: "⚠" }),
    flags.length > 1 ? ` Safety flags: ${flags.length}` : " Safety flag");
  card.flagList.replaceChildren(...flags.map((flag) => el("li", { class: "safety-flag" },
    el("strong", { text: `${CATEGORY[flag.category] || flag.category}` }),
    ` ${DIRECTION[flag.direction] || ""} (turn ${turnNumber(entry.view, flag.turn_id)}). `,
    SAFETY_ACTION[flag.action] || "")));
}

// The transcript holds one line per speaker and turn, as heard: a line sent again for the same
// turn (the student went on talking; the reply as finally heard) replaces the old one.
function addLine(view, event) {
  const lines = view.transcript || (view.transcript = []);
  const line = { turn_id: event.turn_id, speaker: event.speaker, text: event.text, interrupted: !!event.interrupted };
  const at = lines.findIndex((l) => l.turn_id === line.turn_id && l.speaker === line.speaker);
  if (at >= 0) lines[at] = line; else lines.push(line);
}

function turnNumber(view, turnId) {
  const seen = [];
  for (const item of [...(view.transcript || []), ...(view.turns || [])]) {
    if (!seen.includes(item.turn_id)) seen.push(item.turn_id);
  }
  const at = seen.indexOf(turnId);
  return at >= 0 ? at + 1 : seen.length + 1;
}

function renderTranscript(entry) {
  const { view, card } = entry;
  const lines = view.transcript || [];
  const box = card.transcript;
  const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 8;
  card.lines.replaceChildren(...lines.map((line) => el("li", { class: `line ${line.speaker}` },
    el("span", { class: "who", text: line.speaker === "tutor" ? `${tutorName(view)}:` : `${studentName(view)}:` }),
    ` ${line.text}`,
    line.interrupted ? el("em", { class: "cut", text: " (cut off here: the student interrupted)" }) : null)));
  card.noLines.hidden = lines.length > 0;
  if (atBottom) box.scrollTop = box.scrollHeight;
}

function tutorName(view) {
  const persona = state.personas.get(view.persona);
  return persona ? persona.name : "Tutor";
}

function renderLatency(entry) {
  const { view, card } = entry;
  const turns = view.turns || [];
  card.latency.replaceChildren(...turns.map((turn) => {
    const parts = [`Turn ${turnNumber(view, turn.turn_id)}: `];
    if (turn.voice_to_voice_ms != null) parts.push(`voice reply after ${number(turn.voice_to_voice_ms)} ms`);
    if (turn.voice_to_answer_ms != null) parts.push(`${turn.voice_to_voice_ms != null ? ", " : ""}answer after ${number(turn.voice_to_answer_ms)} ms`);
    if (turn.voice_to_voice_ms == null && turn.voice_to_answer_ms == null) parts.push("no reply");
    if (turn.status && turn.status !== "completed") parts.push(` (${turn.status.replace("_", " ")})`);
    return el("li", { text: parts.join("") });
  }));
  card.noLatency.hidden = turns.length > 0;
}

function usageLine(label, used, cap, format) {
  const item = el("li");
  if (cap == null) {
    item.textContent = `${label}: ${format(used)} used, no limit.`;
    return item;
  }
  const share = cap > 0 ? Math.min(100, Math.round((used / cap) * 100)) : 100;
  const reached = used >= cap;
  item.append(`${label}: ${format(used)} of ${format(cap)} (${share}%)${reached ? ", limit reached" : ""}.`,
    el("span", { class: `bar${reached ? " full" : ""}`, "aria-hidden": "true" },
      el("span", { style: `width: ${share}%` })));
  return item;
}

function renderUsage(entry) {
  const { view, card } = entry;
  const u = view.usage || {};
  const caps = view.caps || {};
  const heard = (u.stt_audio_ms || 0) + (u.stt_partial_audio_ms || 0);
  const tokens = (u.llm_prompt_tokens || 0) + (u.llm_completion_tokens || 0);
  const items = [
    usageLine("Speech listened to", heard, caps.stt_audio_ms, seconds),
    usageLine("Answer tokens", tokens, caps.llm_tokens, number),
    usageLine("Characters spoken", u.tts_chars || 0, caps.tts_chars, number),
  ];
  for (const a of view.allowances || []) {
    if (a.scope === "session" || a.limit == null) continue;
    const unit = a.unit === "audio_ms" ? seconds : a.unit === "minor_units" ? (v) => `${number(v)} cost units` : number;
    items.push(usageLine(`Shared ${a.kind || "cost"} limit (${a.scope}, ${a.period})`, a.used || 0, a.limit, unit));
  }
  card.usage.replaceChildren(...items);
}

function renderBudget(entry) {
  const { view, card } = entry;
  const events = view.budget_events || [];
  card.budget.replaceChildren(...events.map((b) => el("li", {
    text: `Turn ${turnNumber(view, b.turn_id)}: ${STAGE[b.stage] || b.stage} took ${number(b.elapsed_ms)} ms ` +
      `of its ${number(b.budget_ms)} ms; ${BUDGET_ACTION[b.action] || b.action}.` })));
  card.noBudget.hidden = events.length > 0;
}

function fillCapInputs(entry) {
  const caps = entry.view.caps || {};
  for (const [key, { input, scale }] of Object.entries(entry.card.capInputs)) {
    if (document.activeElement === input || input.dataset.edited === "true") continue;
    input.value = caps[key] == null ? "" : String(caps[key] / scale);
  }
}

function renderControls(entry) {
  const { view, card } = entry;
  const closed = !!(state.classroom && state.classroom.closed_at);
  const over = view.status === "ended" || closed;
  const hadFocus = card.root.contains(document.activeElement) && document.activeElement !== card.heading &&
    document.activeElement !== card.transcript;
  card.pause.replaceChildren(view.status === "paused" ? "Resume session" : "Pause session",
    hiddenText(` of ${studentName(view)}`));
  // An ended session keeps what happened in it (and the notes sent) but no controls.
  card.controlsBody.hidden = over;
  card.capsForm.hidden = over;
  card.over.hidden = !over;
  // A control that the teacher was on and that just went away: focus goes to the session's name.
  const active = document.activeElement;
  if (hadFocus && (!active || active === document.body || !card.root.contains(active) || active.closest("[hidden]"))) {
    card.heading.focus();
  }
}

for (const input of [ui.createName, ui.retention]) {
  input.addEventListener("input", () => input.removeAttribute("aria-invalid"));
}

// ------------------------------------------------------------------------------ actions
function sessionPath(sessionId, action) {
  return `/api/v1/classrooms/${encodeURIComponent(state.classroom.id)}/sessions/${encodeURIComponent(sessionId)}/${action}`;
}

async function command(sessionId, action, body, method = "POST") {
  const entry = state.sessions.get(sessionId);
  showError("");
  try {
    return await api(method, sessionPath(sessionId, action), body);
  } catch (error) {
    reportFailure(error, `Could not ${ACTION_TEXT[action]} for ${studentName(entry.view)}`);
    throw error;
  }
}
const ACTION_TEXT = { pause: "pause the session", resume: "resume the session", end: "end the session",
  guidance: "send the note", caps: "change the limits" };

async function togglePause(sessionId) {
  const entry = state.sessions.get(sessionId);
  const action = entry.view.status === "paused" ? "resume" : "pause";
  try { await command(sessionId, action); } catch (error) { /* shown */ }
  // The change itself arrives as a session.status event, and is announced then.
}

async function endSession(sessionId) {
  try { await command(sessionId, "end"); } catch (error) { /* shown */ }
}

async function sendNote(sessionId) {
  const entry = state.sessions.get(sessionId);
  const { card } = entry;
  const text = card.note.value.trim();
  if (!text) {
    card.note.setAttribute("aria-invalid", "true");
    showError("Write the note first: one line, up to 200 characters.");
    card.note.focus();
    return;
  }
  card.note.removeAttribute("aria-invalid");
  card.noteSend.disabled = true;
  try {
    await command(sessionId, "guidance", { text });
  } catch (error) {
    card.noteSend.disabled = false;
    return;
  }
  card.noteSend.disabled = false;
  card.note.value = "";
  entry.notes.push(text);
  card.notesSent.append(el("li", { text: `Sent at ${time(new Date().toISOString())}: ${text}` }));
  announce(`Note sent. The tutor uses it from ${studentName(entry.view)}'s next turn.`);
}

async function saveCaps(sessionId) {
  const entry = state.sessions.get(sessionId);
  const caps = {};
  try {
    for (const [key, { input, label, scale }] of Object.entries(entry.card.capInputs)) {
      caps[key] = optionalWhole(input, label, scale);
    }
  } catch (error) {
    if (error instanceof FieldError) { formInvalid(entry.card.capsForm, error); return; }
    throw error;
  }
  formInvalid(entry.card.capsForm, null);
  try {
    await command(sessionId, "caps", caps, "PUT");
  } catch (error) {
    return;
  }
  entry.view.caps = { ...(entry.view.caps || {}), ...caps };
  for (const { input } of Object.values(entry.card.capInputs)) delete input.dataset.edited;
  renderUsage(entry);
  announce(`New limits saved for ${studentName(entry.view)}'s session.`);
}

ui.sessions.addEventListener("input", (event) => {
  if (event.target.matches(".caps-form input")) event.target.dataset.edited = "true";
  if (event.target.matches(".note-form input")) event.target.removeAttribute("aria-invalid");
});

// ------------------------------------------------------------------------------ close a classroom
ui.closeButton.addEventListener("click", () => {
  const live = [...state.sessions.values()].filter((e) => e.view.status !== "ended").length;
  ui.closeDialogText.textContent = `Closing “${state.classroom.name}” ends ` +
    (live ? `the ${live} session${live === 1 ? "" : "s"} running in it now` : "any session in it") +
    ", and its join code stops working. You cannot open it again.";
  ui.closeDialog.showModal();
  ui.closeCancel.focus();
});
ui.closeCancel.addEventListener("click", () => ui.closeDialog.close("cancel"));
ui.closeDialog.addEventListener("close", () => {
  if (ui.closeDialog.returnValue !== "confirm" && !ui.closeButton.hidden) ui.closeButton.focus();
});
ui.closeConfirm.addEventListener("click", async () => {
  ui.closeDialog.close("confirm");
  const room = state.classroom;
  showError("");
  let closed;
  try {
    closed = await api("POST", `/api/v1/classrooms/${encodeURIComponent(room.id)}/close`);
  } catch (error) {
    reportFailure(error, "Could not close the classroom");
    ui.closeButton.focus();
    return;
  }
  markClosed(closed && closed.closed_at ? closed : { ...room, closed_at: new Date().toISOString() });
});

// The close arrives twice (the answer to the teacher's request and the classroom.closed event, in
// either order): the page changes and says so once.
let closedAnnounced = null;
function markClosed(room) {
  const wasOpen = !(state.classroom && state.classroom.closed_at);
  const focusWasInside = ui.closePanel.contains(document.activeElement) || ui.closeDialog.open;
  state.classroom = room;
  renderClassroom();
  renderSummary();
  if (focusWasInside || document.activeElement === document.body) ui.classroomHeading.focus();
  if (wasOpen && closedAnnounced !== room.id) {
    closedAnnounced = room.id;
    announce("The classroom is closed. Its sessions have ended.");
  }
}

// ------------------------------------------------------------------------------ start
ui.backToList.addEventListener("click", (event) => {
  event.preventDefault();
  if (location.hash && location.hash !== "#") location.hash = "";  // hashchange routes
  else route();
});
window.addEventListener("hashchange", route);
route();
