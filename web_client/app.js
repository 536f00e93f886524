// Convergio Voice browser client: WebRTC audio both ways, protocol v1 events on a data channel.
// Captions and state changes reach screen readers through live regions, one final sentence at a
// time (never token by token); errors use role="alert".
//
// Sign-in: the server hands out short-lived access tokens. A student joins a class with the code
// the teacher shows (and an optional nickname) and then chooses among that class's tutors only, or
// arrives with a one-time link (/#signin=<code>) that the page exchanges for a token at once;
// teachers and admins sign in with a password. /#join=<class code> fills in the class code. The token lives in this tab only (sessionStorage, never localStorage or a cookie)
// and no key is ever part of the page.

const $ = (id) => document.getElementById(id);
const ui = {
  stop: $("stop"), persona: $("persona"), start: $("start"), end: $("end"), talk: $("talk"),
  repeat: $("repeat"), captions: $("captions"), captionsLog: $("captions-log"), partial: $("partial"), typed: $("typed"),
  message: $("message"), send: $("send"), status: $("status"), error: $("error"),
  latency: $("latency"), audio: $("tutor-audio"), rate: $("rate"), rateValue: $("rate-value"),
  pttKey: $("ptt-key"), pttKeyChange: $("ptt-key-change"), pttKeyEnabled: $("ptt-key-enabled"),
  pttSettings: $("ptt-settings"), speaking: $("speaking"),
  signin: $("signin"), signinHeading: $("signin-heading"), joinForm: $("join-form"), joinCode: $("join-code"),
  accountForm: $("account-form"), username: $("username"), password: $("password"),
  sessionPanel: $("session-panel"), conversationPanel: $("conversation-panel"),
  usage: $("usage"), usageTotals: $("usage-totals"), usageAllowances: $("usage-allowances"),
  usageNotice: $("usage-notice"),
  classForm: $("class-form"), classCode: $("class-code"), nickname: $("nickname"), classroomLine: $("classroom-line"),
};

const STATUS = {
  signin: "Sign in to talk to a tutor.",
  idle: "Idle. Choose a tutor and start a session.",
  connecting: "Connecting to your tutor…",
  listening: "Listening. Speak when you are ready.",
  listening_ptt: "Ready. Hold the talk key or button while you speak.",
  speaking: "Tutor speaking.",
  error: "Something went wrong. See the message below.",
  ended: "Session ended.",
  paused: "Your teacher paused the session. Wait for them to resume it.",
};
// The teacher's controls, said in the status line (polite), not as alerts.
const TEACHER = {
  resumed: "Your teacher resumed the session. You can talk again.",
  teacher: "Your teacher ended the session.",
  classroom_closed: "Your teacher closed the class, so the session ended.",
};

const state = {
  pc: null, channel: null, mic: null, transceiver: null, phase: "idle", mode: "hands-free",
  pttKey: " ", pttKeyName: "Space", pttKeyEnabled: true, capturingKey: false, talking: false,
  tutorName: "Tutor", replyTurn: null,
};
// Exposed for tests and for anyone debugging a session from the console (without the token).
window.convergio = state;

// ------------------------------------------------------------------------------ sign-in
const TOKEN_KEY = "convergio.token";
const CLASS_KEY = "convergio.classroom";  // the class joined in this tab: {id, name, personas}
let accessToken = sessionStorage.getItem(TOKEN_KEY);
let classroom = null;
try { classroom = JSON.parse(sessionStorage.getItem(CLASS_KEY) || "null"); } catch (error) { classroom = null; }

function authHeaders() {
  return accessToken ? { authorization: `Bearer ${accessToken}` } : {};
}

function keepToken(token, joined = null) {
  accessToken = token;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  classroom = token ? joined : null;
  if (classroom) sessionStorage.setItem(CLASS_KEY, JSON.stringify(classroom));
  else sessionStorage.removeItem(CLASS_KEY);
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body.error && body.error.message) return body.error.message;
  } catch (error) { /* not JSON */ }
  return `HTTP ${response.status}`;
}

function showSignIn(errorText) {
  keepToken(null);
  ui.signin.hidden = false;
  ui.sessionPanel.hidden = true;
  ui.conversationPanel.hidden = true;
  setPhase("signin");
  showError(errorText || "");
  ui.signinHeading.focus();
}

async function signedIn() {
  ui.signin.hidden = true;
  ui.sessionPanel.hidden = false;
  ui.conversationPanel.hidden = false;
  ui.password.value = "";
  ui.joinCode.value = "";
  ui.joinCode.removeAttribute("aria-invalid");
  ui.classCode.value = "";
  ui.nickname.value = "";
  ui.classCode.removeAttribute("aria-invalid");
  showError("");
  setPhase("idle");
  return loadPersonas();
}

async function exchange(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(await errorMessage(response));
  const answer = await response.json();
  keepToken(answer.access_token, answer.classroom || null);
}

async function join(code) {
  try {
    await exchange("/v1/auth/redeem", { code });
  } catch (error) {
    showSignIn(`Could not sign in: ${error.message}`);
    // Back to the field, its text selected, so a corrected code simply replaces it.
    ui.joinCode.setAttribute("aria-invalid", "true");
    ui.joinCode.focus();
    ui.joinCode.select();
    return;
  }
  const ready = await signedIn();
  if (ready) ui.persona.focus();
}

async function joinClass(code, nickname) {
  try {
    await exchange("/v1/auth/join", nickname ? { code, nickname } : { code });
  } catch (error) {
    showSignIn(`Could not join the class: ${error.message}`);
    ui.classCode.value = code;
    ui.nickname.value = nickname;
    ui.classCode.setAttribute("aria-invalid", "true");
    ui.classCode.focus();
    ui.classCode.select();
    return;
  }
  const ready = await signedIn();
  if (ready) ui.persona.focus();
}

// Joining a class from a link (/#join=<code>) or the page's "Join a class" link: the form, the
// code filled in when there is one, focus on what is left to type.
function showJoin(code) {
  showSignIn("");
  ui.classCode.value = code || "";
  (code ? ui.nickname : ui.classCode).focus();
}

ui.classForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const code = ui.classCode.value.trim().replace(/^.*#join=/, "");  // a pasted link works too
  if (!code) {
    showError("Enter the class code.");
    ui.classCode.setAttribute("aria-invalid", "true");
    ui.classCode.focus();
    return;
  }
  joinClass(code, ui.nickname.value.trim());
});

ui.joinForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const code = ui.joinCode.value.trim().replace(/^.*#signin=/, "");  // a pasted link works too
  if (!code) { showError("Enter the sign-in code."); ui.joinCode.focus(); return; }
  join(code);
});

ui.accountForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!ui.username.value.trim() || !ui.password.value) {
    showError("Enter your username and password.");
    (ui.username.value.trim() ? ui.password : ui.username).focus();
    return;
  }
  try {
    await exchange("/v1/auth/sign-in", { username: ui.username.value.trim(), password: ui.password.value });
  } catch (error) {
    ui.password.value = "";
    showError(`Could not sign in: ${error.message}`);
    ui.password.focus();
    return;
  }
  if (await signedIn()) ui.persona.focus();
});

function setPhase(phase) {
  state.phase = phase;
  document.body.dataset.phase = phase;
  const key = phase === "listening" && state.mode === "push-to-talk" ? "listening_ptt" : phase;
  if (ui.status.textContent !== STATUS[key]) ui.status.textContent = STATUS[key];
  ui.status.dataset.state = phase;
  const live = phase === "listening" || phase === "speaking";
  const paused = phase === "paused";  // by the teacher: only End works until they resume
  ui.start.disabled = phase === "connecting" || phase === "signin" || live || paused;
  ui.end.disabled = !(phase === "connecting" || live || paused);
  ui.stop.disabled = !live;
  ui.repeat.disabled = !live;
  ui.message.disabled = !live;
  ui.send.disabled = !live;
  ui.talk.disabled = !live || state.mode !== "push-to-talk";
  ui.persona.disabled = phase === "connecting" || live || paused;
  ui.speaking.classList.toggle("on", phase === "speaking");
}

function showError(text) {
  ui.error.textContent = text;
}

function caption(who, text) {
  const item = document.createElement("li");
  const name = document.createElement("span");
  name.className = "who";
  name.textContent = `${who}:`;
  item.append(name, document.createTextNode(text));
  ui.captions.append(item);
  ui.captionsLog.scrollTop = ui.captionsLog.scrollHeight;
}

function send(message) {
  if (state.channel && state.channel.readyState === "open") state.channel.send(JSON.stringify(message));
}

// ------------------------------------------------------------------------------ microphone
function updateMic() {
  if (!state.mic) return;
  // While the teacher has the session paused, nothing the student says is sent.
  state.mic.enabled = state.phase !== "paused" && (state.mode === "hands-free" || state.talking);
}

function setTalking(on) {
  // Talk may be pressed before the microphone is ready (the session starts first); the choice
  // is kept and applied the moment the microphone arrives (updateMic after getUserMedia).
  if (state.mode !== "push-to-talk") return;
  state.talking = on;
  ui.talk.setAttribute("aria-pressed", String(on));
  ui.talk.textContent = on ? "Talking… release to send" : "Hold to talk";
  updateMic();
}

// ------------------------------------------------------------------------------ session
async function start() {
  showError("");
  setPhase("connecting");
  try {
    const pc = new RTCPeerConnection();
    state.pc = pc;
    // Negotiate first, then attach the microphone once connected, so no speech is lost.
    state.transceiver = pc.addTransceiver("audio", { direction: "sendrecv" });
    const channel = pc.createDataChannel("events");
    state.channel = channel;
    channel.onmessage = (event) => onMessage(JSON.parse(event.data));
    channel.onopen = () => {
      send({ type: "session.start", persona: ui.persona.value });
    };
    channel.onclose = () => {
      // Only the current session's channel counts; an ended session's closes late.
      if (state.channel === channel && state.phase !== "ended") stop("The connection closed.");
    };
    pc.ontrack = (event) => {
      ui.audio.srcObject = event.streams[0] || new MediaStream([event.track]);
    };
    pc.onconnectionstatechange = () => {
      if (state.pc === pc && pc.connectionState === "failed") stop("The connection to the tutor failed.");
    };
    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringDone(pc, 3000);
    const response = await fetch("/v1/webrtc/offer", {
      method: "POST",
      headers: { "content-type": "application/json", ...authHeaders() },
      body: JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp }),
    });
    if (response.status === 401) {
      stop();
      showSignIn("Your sign-in has expired. Sign in again to start a session.");
      return;
    }
    const body = await response.json();
    if (!response.ok) throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
    await pc.setRemoteDescription({ type: "answer", sdp: body.sdp });
    await connected(pc, 10000);
    const stream = await navigator.mediaDevices.getUserMedia({
      // The tutor's own voice must not come back as the student barging in.
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    state.mic = stream.getAudioTracks()[0];
    updateMic();
    await state.transceiver.sender.replaceTrack(state.mic);
  } catch (error) {
    stop(`Could not start the session: ${error.message}`);
  }
}

function iceGatheringDone(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
    });
  });
}

function connected(pc, timeoutMs) {
  if (pc.connectionState === "connected") return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the connection timed out")), timeoutMs);
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "connected") { clearTimeout(timer); resolve(); }
    });
  });
}

function stop(errorText, statusText) {
  if (errorText) {
    showError(errorText);
  }
  send({ type: "session.end" });
  if (state.mic) state.mic.stop();
  if (state.pc) state.pc.close();
  state.pc = null; state.channel = null; state.mic = null; state.talking = false;
  ui.partial.textContent = "";
  setPhase(errorText ? "error" : "ended");
  if (statusText) ui.status.textContent = statusText;
}

function silence() {
  // Immediate for the student; the server cuts the reply and keeps only what was heard.
  ui.audio.muted = true;
  send({ type: "response.cancel" });
}

// ------------------------------------------------------------------------------ usage
const KIND_TEXT = { stt: "listening to speech", llm: "answers", tts: "the tutor's voice" };
const SCOPE_TEXT = { session: "This session's", student: "Your", classroom: "Your class's", key: "Your school's" };
const PERIOD_TEXT = { session: "", day: " for today", month: " for this month", total: "" };
const UNIT_TEXT = { audio_ms: "seconds of speech", tokens: "tokens", chars: "characters" };

function amount(value, unit, currency) {
  if (unit === "minor_units") {
    if (!currency) return `${value.toLocaleString()} minor currency units`;
    const format = new Intl.NumberFormat(undefined, { style: "currency", currency });
    const digits = format.resolvedOptions().maximumFractionDigits;
    return format.format(value / 10 ** digits);
  }
  if (unit === "audio_ms") return `${(value / 1000).toFixed(1)} ${UNIT_TEXT[unit]}`;
  return `${value.toLocaleString()} ${UNIT_TEXT[unit] || unit}`;
}

function capName(scope, kind, unit, period) {
  const what = unit === "minor_units" ? "spending limit" : `limit for ${KIND_TEXT[kind] || kind}`;
  return `${SCOPE_TEXT[scope] || "The"} ${what}${PERIOD_TEXT[period] || ""}`;
}

function showUsage(usage, allowances) {
  const heard = usage.stt_audio_ms + usage.stt_partial_audio_ms;
  const tokens = usage.llm_prompt_tokens + usage.llm_completion_tokens;
  ui.usageTotals.textContent = `This session: ${amount(heard, "audio_ms")} transcribed, ` +
    `${amount(tokens, "tokens")} of answers, ${amount(usage.tts_chars, "chars")} spoken.`;
  ui.usageAllowances.replaceChildren();
  for (const cap of allowances || []) {
    const item = document.createElement("li");
    item.textContent = `${capName(cap.scope, cap.kind, cap.unit, cap.period)}: ` +
      `${amount(cap.remaining, cap.unit, cap.currency)} left of ${amount(cap.limit, cap.unit, cap.currency)}.`;
    ui.usageAllowances.append(item);
  }
  ui.usageAllowances.hidden = !ui.usageAllowances.children.length;
  ui.usage.hidden = false;
}

function showCapReached(message) {
  // Polite: the tutor also says so; this must not cut off what a screen reader is reading.
  ui.usageNotice.textContent = `${capName(message.scope, message.kind, message.unit, message.period)} ` +
    "is reached, so the tutor cannot do that any more right now. Please ask your teacher.";
}

// ------------------------------------------------------------------------------ events
function onMessage(message) {
  switch (message.type) {
    case "session.started":
      state.tutorName = message.persona.name;
      ui.usage.hidden = true;
      ui.usageNotice.textContent = "";
      setPhase("listening");
      if (Number(ui.rate.value) !== 1) send({ type: "session.update", voice_rate: Number(ui.rate.value) });
      break;
    case "transcript.partial":
      ui.partial.textContent = message.text;
      break;
    case "turn.thinking":
      // The tutor waits out the pause in silence; say so once, politely (a status, not an alert).
      ui.status.textContent = "Take your time. The tutor is waiting for you to finish.";
      break;
    case "turn.prompt":
      caption(state.tutorName, message.text);
      break;
    case "transcript.final":
      if (state.phase === "listening") setPhase("listening");  // back from "take your time"
      ui.partial.textContent = "";
      if (message.text) caption("You", message.text);
      break;
    case "reply.audio.started":
      ui.audio.muted = false;
      state.replyTurn = message.turn_id;
      setPhase("speaking");
      break;
    case "reply.sentence":
      caption(state.tutorName, message.text);
      break;
    case "reply.audio.done":
    case "reply.interrupted":
      if (state.phase === "speaking") setPhase("listening");
      break;
    case "turn.done":
      if (message.latency && message.latency.voice_to_voice_ms != null) {
        ui.latency.textContent = `Last reply started ${message.latency.voice_to_voice_ms} ms after you stopped.`;
      }
      if (state.phase === "speaking") setPhase("listening");
      break;
    case "usage.updated":
      showUsage(message.usage, message.allowances);
      break;
    case "usage.cap_reached":
      showCapReached(message);
      break;
    case "session.paused":
      ui.partial.textContent = "";
      setPhase("paused");
      updateMic();
      break;
    case "session.resumed":
      setPhase("listening");
      updateMic();
      ui.status.textContent = TEACHER.resumed;
      break;
    case "session.ended":
      // Ended by the teacher, or by closing the class: said in the status line, not as an error.
      if (TEACHER[message.reason]) stop(undefined, TEACHER[message.reason]);
      break;
    case "error":
      if (message.code === "session_paused") {
        ui.status.textContent = STATUS.paused;
        break;
      }
      if (message.code === "cap_reached" && !message.fatal) {
        // Said once, politely, by usage.cap_reached; no alert on every turn that meets the cap.
        if (!ui.usageNotice.textContent) ui.usageNotice.textContent = message.message;
        break;
      }
      showError(message.message);
      if (message.fatal) stop(message.message);
      break;
    default:
      break;
  }
}

// ------------------------------------------------------------------------------ controls
// True when signed in (or the server needs no sign-in) and the tutors are listed: a class's own
// tutors after joining a class, otherwise every tutor the server has.
async function loadPersonas() {
  try {
    const response = await fetch("/v1/personas", { headers: authHeaders() });
    if (response.status === 401) {
      showSignIn(accessToken ? "Your sign-in has expired. Sign in again." : "");
      return false;
    }
    if (!response.ok) throw new Error(await errorMessage(response));
    const all = await response.json();
    const personas = classroom && classroom.personas && classroom.personas.length ? classroom.personas : all;
    ui.classroomLine.hidden = !classroom;
    ui.classroomLine.textContent = classroom ? `Your class: ${classroom.name}. Choose one of its tutors.` : "";
    ui.persona.replaceChildren();
    for (const p of personas) {
      const option = document.createElement("option");
      option.value = p.id;
      option.textContent = `${p.name}, ${p.subject}`;
      ui.persona.append(option);
    }
    return true;
  } catch (error) {
    showError("Could not load the list of tutors.");
    return false;
  }
}

function rateText(value) {
  return Number(value) === 1 ? "normal speed" : `${Number(value).toFixed(1)} times normal speed`;
}

ui.start.addEventListener("click", start);
ui.end.addEventListener("click", () => stop());
ui.stop.addEventListener("click", silence);
ui.repeat.addEventListener("click", () => send({ type: "response.repeat" }));
ui.typed.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.message.value.trim();
  if (!text) return;
  send({ type: "input.text", text });
  ui.message.value = "";
});
ui.rate.addEventListener("input", () => {
  const text = rateText(ui.rate.value);
  ui.rate.setAttribute("aria-valuetext", text);
  ui.rateValue.textContent = text;
});
ui.rate.addEventListener("change", () => send({ type: "session.update", voice_rate: Number(ui.rate.value) }));
for (const radio of document.querySelectorAll('input[name="mode"]')) {
  radio.addEventListener("change", () => {
    state.mode = radio.value;
    ui.pttSettings.hidden = state.mode !== "push-to-talk";
    state.talking = false;
    updateMic();
    setPhase(state.phase);
  });
}
ui.pttSettings.hidden = true;

// The Talk button works with a pointer and with Space or Enter held down while it has focus.
ui.talk.addEventListener("pointerdown", () => setTalking(true));
ui.talk.addEventListener("pointerup", () => setTalking(false));
ui.talk.addEventListener("pointerleave", () => { if (state.talking) setTalking(false); });
ui.talk.addEventListener("keydown", (event) => {
  if ((event.key === " " || event.key === "Enter") && !event.repeat) { event.preventDefault(); setTalking(true); }
});
ui.talk.addEventListener("keyup", (event) => {
  if (event.key === " " || event.key === "Enter") { event.preventDefault(); setTalking(false); }
});

// The push-to-talk key (WCAG 2.1.4): it can be changed or turned off, and never fires while
// typing in a field or operating another control.
function keyIsFree(event) {
  const el = event.target;
  return !(el instanceof HTMLInputElement || el instanceof HTMLSelectElement ||
           el instanceof HTMLTextAreaElement || (el instanceof HTMLButtonElement && el !== ui.talk));
}
ui.pttKeyChange.addEventListener("click", () => {
  state.capturingKey = true;
  ui.pttKey.textContent = "press a key…";
});
ui.pttKeyEnabled.addEventListener("change", () => { state.pttKeyEnabled = ui.pttKeyEnabled.checked; });
document.addEventListener("keydown", (event) => {
  if (state.capturingKey) {
    if (event.key === "Tab") return;
    event.preventDefault();
    state.capturingKey = false;
    if (event.key !== "Escape") {
      state.pttKey = event.key;
      state.pttKeyName = event.key === " " ? "Space" : event.key;
    }
    ui.pttKey.textContent = state.pttKeyName;
    ui.pttKeyChange.focus();
    return;
  }
  if (event.target === ui.talk) return;
  if (state.pttKeyEnabled && event.key === state.pttKey && !event.repeat && keyIsFree(event)) {
    event.preventDefault();
    setTalking(true);
  }
});
document.addEventListener("keyup", (event) => {
  if (event.target === ui.talk) return;
  if (state.pttKeyEnabled && event.key === state.pttKey && state.talking) {
    event.preventDefault();
    setTalking(false);
  }
});

setPhase("idle");
// A sign-in link: take the code out of the address bar and history at once, then redeem it.
const hashParams = new URLSearchParams(location.hash.slice(1));
const linkCode = hashParams.get("signin");
if (linkCode) {
  history.replaceState(null, "", location.pathname + location.search);
  join(linkCode);
} else if (hashParams.has("join")) {
  history.replaceState(null, "", location.pathname + location.search);
  showJoin(hashParams.get("join"));
} else {
  loadPersonas();
}
window.addEventListener("hashchange", () => {
  const params = new URLSearchParams(location.hash.slice(1));
  if (!params.has("join") || ["connecting", "listening", "speaking", "paused"].includes(state.phase)) return;
  history.replaceState(null, "", location.pathname + location.search);
  showJoin(params.get("join"));
});
