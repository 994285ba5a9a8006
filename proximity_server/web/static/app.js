// The web app: screens over the data layer in client.js. Text from the
// server is only ever rendered as text (htm escapes it), never as HTML.
import { html, render, useState, useEffect, useRef, useLayoutEffect } from "./vendor/preact-htm.module.js";
import { ApiClient, ApiError, Realtime, MessageList, Outbox, GENDERS, MAX_PHOTOS, REPORT_REASONS, VALUE_CHOICES,
  DEFAULT_TIME_ZONE, RETAKE_TOO_SOON, randomId, resumeSession, trackSessionHint } from "./client.js";

const TYPING_SHOWN_MS = 4000;
const TYPING_SEND_EVERY_MS = 2500;
const TOAST_MS = 6000;
const PAGE = 30;
const EXPORT_POLL_MS = 1000;
const EXPORT_FILE_NAME = "proximity-my-data.zip";
const STYLE_NAMES = { secure: "Secure", anxious: "Anxious", avoidant: "Avoidant", fearful_avoidant: "Fearful-avoidant" };
const VALUE_LABELS = { family_plans: "Family plans", smoking: "Smoking", drinking: "Drinking",
  faith_importance: "Importance of faith" };
const BROWSER_TIME_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || DEFAULT_TIME_ZONE;
const TIME_ZONES = Intl.supportedValuesOf?.("timeZone") ?? [];

const api = new ApiClient();
const rt = new Realtime(api);

// -- one small store ---------------------------------------------------------

const state = {
  booting: true, signedIn: false, me: null, route: parseRoute(), status: "offline",
  matches: [], conversations: [], toasts: [],
  /** The assessment's statements and your result: undefined until loaded. */ assessment: undefined,
  /** Just made a profile: the assessment is offered as the next step. */ onboarding: false,
  /** "Skip for now" was chosen: no more invitations this visit. */ assessmentSkipped: false,
  /** @type {Map<string, MessageList>} */ lists: new Map(),
  /** @type {Map<string, string|null>} */ olderCursor: new Map(),
  /** @type {Record<string, number>} */ typing: {},
  /** @type {Record<string, number>} */ readByThem: {},
  outbox: null,
};
const subscribers = new Set();
function update(changes = {}) {
  Object.assign(state, changes);
  for (const fn of subscribers) fn();
}
function useStore() {
  const [, force] = useState(0);
  useLayoutEffect(() => {
    const fn = () => force((n) => n + 1);
    subscribers.add(fn);
    fn(); // catch up with changes made before this component subscribed
    return () => subscribers.delete(fn);
  }, []);
  return state;
}

function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  return { name: parts[0] || "discover", id: parts[1] ? decodeURIComponent(parts[1]) : null };
}
addEventListener("hashchange", () => update({ route: parseRoute() }));
function go(path) { location.hash = "#/" + path; }

function toast(text, kind = "info", link = null) {
  if (state.toasts.some((t) => t.text === text)) return; // e.g. a match heard twice (reply and event)
  const id = randomId();
  update({ toasts: [...state.toasts, { id, text, kind, link }] });
  setTimeout(() => update({ toasts: state.toasts.filter((t) => t.id !== id) }), TOAST_MS);
}

function listFor(cid) {
  if (!state.lists.has(cid)) state.lists.set(cid, new MessageList());
  return state.lists.get(cid);
}

// -- session -----------------------------------------------------------------

async function loadAssessment() {
  const assessment = await api.assessment();
  update({ assessment });
  return assessment;
}

async function loadLists() {
  const [matches, convs] = await Promise.all([api.matches(), api.conversations()]);
  update({ matches: matches.items, conversations: convs.items, listsLoaded: true });
}

async function startSession() {
  state.outbox = new Outbox(globalThis.localStorage ?? null, api.userId);
  for (const item of state.outbox.all()) {
    listFor(item.conversation_id).pending.set(item.client_id, { ...item, state: item.failed ? "failed" : "pending" });
  }
  rt.start();
  const me = await api.me();
  update({ signedIn: true, me, booting: false });
  if (!me.profile && state.route.name !== "profile") go("profile");
  loadLists().catch(() => {});
}

api.onAuthChange((signedIn) => {
  if (!signedIn) {
    rt.stop();
    state.lists.clear();
    update({ signedIn: false, me: null, matches: [], conversations: [], listsLoaded: false, booting: false,
      assessment: undefined, onboarding: false, assessmentSkipped: false });
  }
});

rt.on("status", (status) => update({ status }));
rt.on("connected", () => { flushOutbox(); loadLists().catch(() => {}); });
rt.on("resync", () => { state.lists.clear(); loadLists().catch(() => {}); });
addEventListener("online", () => rt.reconnectNow());
addEventListener("offline", () => rt.dropped());

rt.on("message", (ev) => {
  const m = ev.message;
  const list = state.lists.get(m.conversation_id);
  if (list) list.add([m]);
  if (m.client_id) state.outbox?.remove(m.client_id);
  const mine = m.sender_id === api.userId;
  const open = state.route.name === "chat" && state.route.id === m.conversation_id;
  const convs = state.conversations.map((c) => c.conversation_id !== m.conversation_id ? c : {
    ...c, last_message: m, last_activity_at: m.created_at,
    unread_count: mine || open ? c.unread_count : c.unread_count + 1,
  });
  convs.sort((a, b) => (b.last_activity_at > a.last_activity_at ? 1 : -1));
  const typing = { ...state.typing };
  if (!mine) delete typing[m.conversation_id];
  update({ conversations: convs, typing });
});
rt.on("read", (ev) => {
  if (ev.reader_id === api.userId) {
    update({ conversations: state.conversations.map((c) => c.conversation_id === ev.conversation_id
      ? { ...c, unread_count: 0 } : c) });
    return;
  }
  const prev = state.readByThem[ev.conversation_id] ?? 0;
  if (ev.last_read_message_id > prev) {
    update({ readByThem: { ...state.readByThem, [ev.conversation_id]: ev.last_read_message_id } });
  }
});
rt.on("match", (ev) => {
  loadLists().then(() => {
    const m = state.matches.find((x) => x.match_id === ev.match_id);
    toast(`It's a match${m?.user.display_name ? " with " + m.user.display_name : ""}!`, "match",
      "chat/" + ev.conversation_id);
  }).catch(() => {});
});
rt.on("unmatch", () => { loadLists().catch(() => {}); });
rt.on("typing", (ev) => {
  update({ typing: { ...state.typing, [ev.conversation_id]: Date.now() } });
  setTimeout(() => update(), TYPING_SHOWN_MS + 50);
});
rt.on("presence", (ev) => {
  update({ matches: state.matches.map((m) => m.user.user_id === ev.user_id
    ? { ...m, presence: { online: ev.online, last_seen: ev.last_seen } } : m) });
});
rt.on("nudge", (ev) => toast(ev.message, "nudge"));

// -- sending -----------------------------------------------------------------

// One send at a time per conversation, so the server numbers messages in
// the order they were written.
const sendChains = new Map();
function deliver(item) {
  const list = listFor(item.conversation_id);
  list.pending.set(item.client_id, { ...item, state: "pending" });
  update();
  const chain = (sendChains.get(item.conversation_id) ?? Promise.resolve()).then(() => deliverNow(item, list));
  sendChains.set(item.conversation_id, chain);
  return chain;
}

async function deliverNow(item, list) {
  if (!list.pending.has(item.client_id) || list.pending.get(item.client_id).state !== "pending") return;
  if (!rt.ready) return; // sent on (re)connect
  try {
    const msg = await rt.sendMessage(item.conversation_id, item.text, item.client_id);
    list.add([msg]);
    state.outbox.remove(item.client_id);
  } catch (e) {
    if (e instanceof ApiError && (e.code === "network" || e.code === "timeout")) return; // resent on reconnect
    list.pending.set(item.client_id, { ...item, state: "failed", error: e.message });
    state.outbox.put({ ...item, failed: true });
  }
  update();
}

function flushOutbox() {
  if (!state.outbox) return;
  // Messages that only failed for want of a network go out again too.
  for (const item of state.outbox.all()) if (!item.failed || item.offline) deliver({ ...item, failed: false, offline: false });
}

function send(conversationId, text) {
  const item = { conversation_id: conversationId, client_id: randomId(), text, created_at: new Date().toISOString() };
  state.outbox.put(item);
  deliver(item);
}

// Retry now: over the socket when it is up, else over HTTP (idempotent by
// client_id, so a message the socket already delivered is not doubled).
async function retry(item) {
  const again = { conversation_id: item.conversation_id, client_id: item.client_id, text: item.text,
    created_at: item.created_at };
  const list = listFor(item.conversation_id);
  if (globalThis.navigator?.onLine === false) {
    list.pending.set(item.client_id, { ...again, state: "failed", offline: true,
      error: "You are offline. It will be sent when you are back online." });
    state.outbox.put({ ...again, failed: true, offline: true });
    update();
    return;
  }
  state.outbox.put(again);
  if (rt.ready) { deliver(again); return; }
  list.pending.set(item.client_id, { ...again, state: "pending" });
  update();
  try {
    list.add([await api.sendMessage(again.conversation_id, again.text, again.client_id)]);
    state.outbox.remove(again.client_id);
  } catch (e) {
    const offline = e instanceof ApiError && e.code === "network";
    list.pending.set(item.client_id, { ...again, state: "failed", offline, error: e.message });
    state.outbox.put({ ...again, failed: true, offline });
  }
  update();
}

// -- small pieces --------------------------------------------------------------

function Field({ id, label, error, hint, children }) {
  return html`<div class="field">
    <label for=${id}>${label}</label>
    ${children}
    ${hint && html`<p class="hint" id=${id + "-hint"}>${hint}</p>`}
    ${error && html`<p class="error" id=${id + "-error"} role="alert">${error}</p>`}
  </div>`;
}
const describedBy = (id, errors, hint) =>
  [hint ? id + "-hint" : "", errors ? id + "-error" : ""].filter(Boolean).join(" ") || undefined;

function Avatar({ name, photo }) {
  if (photo) return html`<img class="avatar" src=${photo.thumb_url} alt="" />`;
  return html`<span class="avatar avatar-letter" aria-hidden="true">${(name || "?").slice(0, 1).toUpperCase()}</span>`;
}

function timeAgo(iso) {
  if (!iso) return "";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}
const clock = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
const label = (s) => s.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());
const distanceText = (km) => `${km} km away`;
const numberOrNull = (text) => (String(text).trim() === "" ? null : Number(text));
/** A local calendar day ("2024-05-14") as people read it. */
const dayText = (isoDate) => new Date(`${isoDate}T12:00:00`).toLocaleDateString([], { weekday: "long", day: "numeric", month: "long" });

// -- account -------------------------------------------------------------------

function AuthScreen() {
  const [mode, setMode] = useState("signup");
  const [errors, setErrors] = useState({});
  const [busy, setBusy] = useState(false);
  async function submit(e) {
    e.preventDefault();
    const form = new FormData(e.target);
    setBusy(true);
    setErrors({});
    try {
      if (mode === "signup") await api.register(form.get("email"), form.get("password"));
      else await api.login(form.get("email"), form.get("password"));
      await startSession();
    } catch (err) {
      const field = err.field === "email" || err.field === "password" ? err.field : "form";
      setErrors({ [field]: err.message });
    } finally {
      setBusy(false);
    }
  }
  const signup = mode === "signup";
  return html`<main class="auth" id="main">
    <div class="auth-card">
      <h1 class="brand-big">Proximity</h1>
      <p class="lede">Meet people who share what you love, nearby.</p>
      <h2>${signup ? "Create your account" : "Welcome back"}</h2>
      <form onSubmit=${submit} novalidate>
        <${Field} id="email" label="Email" error=${errors.email}>
          <input id="email" name="email" type="email" autocomplete="email" required
            aria-invalid=${errors.email ? "true" : undefined} aria-describedby=${describedBy("email", errors.email)} />
        <//>
        <${Field} id="password" label="Password" error=${errors.password}
          hint=${signup ? "At least 10 characters; avoid common passwords." : null}>
          <input id="password" name="password" type="password" required
            autocomplete=${signup ? "new-password" : "current-password"}
            aria-invalid=${errors.password ? "true" : undefined}
            aria-describedby=${describedBy("password", errors.password, signup)} />
        <//>
        ${errors.form && html`<p class="error" role="alert">${errors.form}</p>`}
        <button class="primary wide" type="submit" disabled=${busy}>${signup ? "Sign up" : "Log in"}</button>
      </form>
      <p class="switch">${signup ? "Already have an account?" : "New here?"}${" "}
        <button type="button" class="link" onClick=${() => { setMode(signup ? "login" : "signup"); setErrors({}); }}>
          ${signup ? "Log in instead" : "Create an account"}</button></p>
    </div>
  </main>`;
}

// -- profile ---------------------------------------------------------------------

function ProfileScreen() {
  const s = useStore();
  const p = s.me?.profile;
  const [errors, setErrors] = useState({});
  const [saved, setSaved] = useState(false);
  const fromProfile = () => ({
    display_name: p?.display_name ?? "", birthdate: p?.birthdate ?? "", gender: p?.gender ?? GENDERS[0],
    interested_in: p?.interested_in ?? [], bio: p?.bio ?? "", interests: (p?.interests ?? []).join(", "),
    ...Object.fromEntries(Object.keys(VALUE_CHOICES).map((q) => [q, p?.[q] ?? ""])),
    age_min: p?.age_min ?? "", age_max: p?.age_max ?? "", max_distance_km: p?.max_distance_km ?? "",
    // A new profile starts in the browser's time zone; a saved one keeps its own.
    time_zone: p ? (p.time_zone ?? DEFAULT_TIME_ZONE) : BROWSER_TIME_ZONE, crossed_paths: p?.crossed_paths ?? true,
  });
  const [v, setV] = useState(fromProfile);
  const [loc, setLoc] = useState({ lat: p?.location?.lat ?? "", lon: p?.location?.lon ?? "" });
  const [geoNote, setGeoNote] = useState("");
  useEffect(() => {
    setV(fromProfile());
    setLoc({ lat: p?.location?.lat ?? "", lon: p?.location?.lon ?? "" });
  }, [p?.updated_at]);
  const bind = (name) => ({ name, value: v[name], onInput: (e) => setV((old) => ({ ...old, [name]: e.target.value })) });
  const toggle = (g) => setV((old) => ({ ...old, interested_in: old.interested_in.includes(g)
    ? old.interested_in.filter((x) => x !== g) : [...old.interested_in, g] }));

  async function save(e) {
    e.preventDefault();
    const body = {
      display_name: v.display_name, birthdate: v.birthdate, gender: v.gender,
      interested_in: GENDERS.filter((g) => v.interested_in.includes(g)), bio: v.bio,
      interests: v.interests.split(",").map((x) => x.trim()).filter(Boolean),
      location: loc.lat === "" && loc.lon === "" ? null : { lat: Number(loc.lat), lon: Number(loc.lon) },
      ...Object.fromEntries(Object.keys(VALUE_CHOICES).map((q) => [q, v[q] || null])),
      age_min: numberOrNull(v.age_min), age_max: numberOrNull(v.age_max),
      max_distance_km: numberOrNull(v.max_distance_km), time_zone: v.time_zone.trim() || null,
      crossed_paths: v.crossed_paths,
    };
    setErrors({});
    setSaved(false);
    try {
      const first = !state.me.profile;
      const profile = await api.putProfile(body);
      update({ me: { ...state.me, profile }, onboarding: first || state.onboarding });
      setSaved(true);
    } catch (err) {
      setErrors({ [err.field && err.field in body ? err.field : "form"]: err.message });
    }
  }
  function locate() {
    if (!navigator.geolocation) { setGeoNote("Your browser cannot share a location; type it instead."); return; }
    setGeoNote("Asking your browser for your location…");
    navigator.geolocation.getCurrentPosition(
      (pos) => {
        setLoc({ lat: +pos.coords.latitude.toFixed(4), lon: +pos.coords.longitude.toFixed(4) });
        setGeoNote("Location filled in. Save to keep it.");
      },
      () => setGeoNote("No location shared. You can type it instead."),
    );
  }
  const err = (name) => ({ "aria-invalid": errors[name] ? "true" : undefined, "aria-describedby": describedBy(name, errors[name]) });
  return html`<main id="main" class="page">
    <h1>Your profile</h1>
    ${!p && html`<p class="notice">Tell people about yourself to start discovering.</p>`}
    <form class="card form" onSubmit=${save} novalidate>
      <${Field} id="display_name" label="Display name" error=${errors.display_name}>
        <input id="display_name" maxlength="50" required ...${bind("display_name")} ...${err("display_name")} />
      <//>
      <div class="row">
        <${Field} id="birthdate" label="Birthdate" error=${errors.birthdate}>
          <input id="birthdate" type="date" required ...${bind("birthdate")} ...${err("birthdate")} />
        <//>
        <${Field} id="gender" label="Gender" error=${errors.gender}>
          <select id="gender" ...${bind("gender")} onChange=${bind("gender").onInput} ...${err("gender")}>
            ${GENDERS.map((g) => html`<option value=${g}>${label(g)}</option>`)}
          </select>
        <//>
      </div>
      <fieldset class="field" aria-describedby=${errors.interested_in ? "interested_in-error" : undefined}>
        <legend>Interested in</legend>
        <div class="chips">
          ${GENDERS.map((g) => html`<label class="chip"><input type="checkbox" value=${g}
            checked=${v.interested_in.includes(g)} onChange=${() => toggle(g)} /> ${label(g)}</label>`)}
        </div>
        ${errors.interested_in && html`<p class="error" id="interested_in-error" role="alert">${errors.interested_in}</p>`}
      </fieldset>
      <${Field} id="bio" label="Bio" error=${errors.bio} hint="Up to 500 characters.">
        <textarea id="bio" rows="3" maxlength="500" ...${bind("bio")} aria-describedby=${describedBy("bio", errors.bio, true)}></textarea>
      <//>
      <${Field} id="interests" label="Interests" error=${errors.interests} hint="Separate them with commas, e.g. hiking, jazz, board games.">
        <input id="interests" ...${bind("interests")}
          aria-describedby=${describedBy("interests", errors.interests, true)} />
      <//>
      <fieldset class="field">
        <legend>Location</legend>
        <p class="hint" id="loc-hint">Used only to show distances; others never see your coordinates.</p>
        <div class="row">
          <${Field} id="lat" label="Latitude" error=${errors.location}>
            <input id="lat" type="number" step="any" min="-90" max="90" value=${loc.lat}
              onInput=${(e) => setLoc({ ...loc, lat: e.target.value })} aria-describedby="loc-hint" />
          <//>
          <${Field} id="lon" label="Longitude">
            <input id="lon" type="number" step="any" min="-180" max="180" value=${loc.lon}
              onInput=${(e) => setLoc({ ...loc, lon: e.target.value })} aria-describedby="loc-hint" />
          <//>
        </div>
        <div class="actions">
          <button type="button" class="secondary" onClick=${locate}>Use my current location</button>
          <button type="button" class="ghost" onClick=${() => setLoc({ lat: "", lon: "" })}>Clear location</button>
        </div>
        <p class="hint" aria-live="polite">${geoNote}</p>
      </fieldset>
      <${ValuesFields} v=${v} bind=${bind} errors=${errors} err=${err} />
      <${PreferenceFields} v=${v} setV=${setV} bind=${bind} errors=${errors} err=${err} saved=${Boolean(p)} />
      ${errors.form && html`<p class="error" role="alert">${errors.form}</p>`}
      <div class="actions">
        <button class="primary" type="submit">Save profile</button>
        <span class="ok" role="status">${saved ? "Saved." : ""}</span>
      </div>
    </form>
    ${p && s.onboarding && html`<${AssessmentCard} />`}
    ${p && html`<${Photos} photos=${p.photos ?? []} />`}
    ${p && !s.onboarding && html`<${AssessmentCard} />`}
    <${AccountPanel} />
  </main>`;
}

/** What matters to you: each question optional ("Prefer not to say" is null). */
function ValuesFields({ v, bind, errors, err }) {
  return html`<fieldset class="section">
    <legend>Values</legend>
    <p class="hint">Optional. Used only to suggest people who fit you; never shown on your profile.</p>
    <div class="grid-2">
      ${Object.entries(VALUE_CHOICES).map(([q, choices]) => html`<${Field} id=${q} label=${VALUE_LABELS[q]} error=${errors[q]}>
        <select id=${q} ...${bind(q)} onChange=${bind(q).onInput} ...${err(q)}>
          <option value="">Prefer not to say</option>
          ${choices.map((c) => html`<option value=${c}>${label(c)}</option>`)}
        </select>
      <//>`)}
    </div>
  </fieldset>`;
}

/** Whom to suggest, when the day's list turns over, and crossed paths. */
function PreferenceFields({ v, setV, bind, errors, err, saved }) {
  const offerBrowserZone = saved && v.time_zone === DEFAULT_TIME_ZONE && BROWSER_TIME_ZONE !== DEFAULT_TIME_ZONE;
  const tzHint = html`Your suggestions change at midnight in this time zone.${offerBrowserZone && html` <button type="button"
    class="link" onClick=${() => setV((old) => ({ ...old, time_zone: BROWSER_TIME_ZONE }))}>Use ${BROWSER_TIME_ZONE}</button>`}`;
  return html`<fieldset class="section">
    <legend>Who you'd like to meet</legend>
    <div class="row">
      <${Field} id="age_min" label="Min age" error=${errors.age_min}>
        <input id="age_min" type="number" min="18" max="120" inputmode="numeric" ...${bind("age_min")} ...${err("age_min")} />
      <//>
      <${Field} id="age_max" label="Max age" error=${errors.age_max}>
        <input id="age_max" type="number" min="18" max="120" inputmode="numeric" ...${bind("age_max")} ...${err("age_max")} />
      <//>
      <${Field} id="max_distance_km" label="Max distance (km)" error=${errors.max_distance_km}>
        <input id="max_distance_km" type="number" min="1" max="20000" inputmode="numeric" ...${bind("max_distance_km")}
          ...${err("max_distance_km")} />
      <//>
    </div>
    <${Field} id="time_zone" label="Time zone" error=${errors.time_zone} hint=${tzHint}>
      <input id="time_zone" list="time-zones" autocomplete="off" spellcheck="false" ...${bind("time_zone")}
        ...${err("time_zone")} aria-describedby=${describedBy("time_zone", errors.time_zone, true)} />
      <datalist id="time-zones">${TIME_ZONES.map((z) => html`<option value=${z}></option>`)}</datalist>
    <//>
    <div class="field check">
      <input id="crossed_paths" type="checkbox" checked=${v.crossed_paths} aria-describedby="crossed_paths-hint"
        onChange=${(e) => setV((old) => ({ ...old, crossed_paths: e.target.checked }))} />
      <div>
        <label for="crossed_paths">Crossed paths</label>
        <p class="hint" id="crossed_paths-hint">People whose phones passed yours improve your suggestions.
          Turn this off to stop recording them.</p>
        ${errors.crossed_paths && html`<p class="error" role="alert">${errors.crossed_paths}</p>`}
      </div>
    </div>
  </fieldset>`;
}

function Photos({ photos }) {
  const [progress, setProgress] = useState(null);
  const [error, setError] = useState("");
  const [announce, setAnnounce] = useState("");
  const dragFrom = useRef(null);
  const full = photos.length >= MAX_PHOTOS;
  const setPhotos = (items) => update({ me: { ...state.me, profile: { ...state.me.profile, photos: items } } });

  async function upload(e) {
    const file = e.target.files[0];
    e.target.value = "";
    if (!file) return;
    setError("");
    setProgress(0);
    try {
      await api.uploadPhoto(file, setProgress);
      setPhotos((await api.listPhotos()).items);
      setAnnounce("Photo added.");
    } catch (err) {
      setError(err.message);
    } finally {
      setProgress(null);
    }
  }
  async function move(from, to) {
    if (to < 0 || to >= photos.length || from === to) return;
    const ids = photos.map((p) => p.photo_id);
    const [id] = ids.splice(from, 1);
    ids.splice(to, 0, id);
    try {
      setPhotos((await api.reorderPhotos(ids)).items);
      setAnnounce(`Photo moved to position ${to + 1} of ${ids.length}.`);
    } catch (err) { setError(err.message); }
  }
  async function remove(id) {
    try {
      await api.deletePhoto(id);
      setPhotos(photos.filter((p) => p.photo_id !== id));
      setAnnounce("Photo deleted.");
    } catch (err) { setError(err.message); }
  }
  return html`<section class="card" aria-labelledby="photos-h">
    <h2 id="photos-h">Photos</h2>
    <p class="hint">Up to ${MAX_PHOTOS} photos (${photos.length} of ${MAX_PHOTOS} used). The first one is your main photo.
      Drag to reorder, or use the move buttons.</p>
    <ol class="photo-grid">
      ${photos.map((p, i) => html`<li key=${p.photo_id} class="photo-tile" draggable="true"
          onDragStart=${(e) => { dragFrom.current = i; e.dataTransfer?.setData("text/plain", p.photo_id); }}
          onDragOver=${(e) => e.preventDefault()}
          onDrop=${(e) => { e.preventDefault(); if (dragFrom.current !== null) move(dragFrom.current, i); dragFrom.current = null; }}>
        <img src=${p.thumb_url} alt=${`Photo ${i + 1}${i === 0 ? " (main)" : ""}`} />
        <div class="tile-actions">
          <button type="button" class="icon" aria-label=${`Move photo ${i + 1} earlier`} disabled=${i === 0}
            onClick=${() => move(i, i - 1)}>←</button>
          <button type="button" class="icon" aria-label=${`Move photo ${i + 1} later`} disabled=${i === photos.length - 1}
            onClick=${() => move(i, i + 1)}>→</button>
          <button type="button" class="icon danger" aria-label=${`Delete photo ${i + 1}`}
            onClick=${() => remove(p.photo_id)}>✕</button>
        </div>
      </li>`)}
    </ol>
    <div class="upload">
      <label class=${"button secondary" + (full || progress !== null ? " disabled" : "")} for="photo-file">Add photo</label>
      <input id="photo-file" class="visually-hidden" type="file" accept="image/jpeg,image/png,image/webp"
        disabled=${full || progress !== null} aria-describedby=${full ? "photos-full" : undefined} onChange=${upload} />
      ${progress !== null && html`<span class="progress" role="status">
        <progress max="1" value=${progress} aria-label="Upload progress">${Math.round(progress * 100)}%</progress>
        <span class="small muted">Uploading… ${Math.round(progress * 100)}%</span></span>`}
    </div>
    ${full && html`<p class="notice" id="photos-full">You have ${MAX_PHOTOS} photos, the most a profile can hold.
      Delete one to add another.</p>`}
    ${error && html`<p class="error" role="alert">${error}</p>`}
    <p class="visually-hidden" role="status">${announce}</p>
  </section>`;
}

function AccountPanel() {
  const s = useStore();
  return html`<section class="card" aria-labelledby="account-h">
    <h2 id="account-h">Account</h2>
    <p>Signed in as <strong>${s.me?.email}</strong></p>
    <div class="actions">
      <a class="button secondary" href="#/account">Your data and account</a>
      <button type="button" class="ghost danger" onClick=${() => api.logoutAll().catch(() => {})}>Log out everywhere</button>
    </div>
  </section>`;
}

// -- your data and account ---------------------------------------------------------

function PasswordField({ id, error, value, onInput, inputRef }) {
  return html`<${Field} id=${id} label="Current password" error=${error}>
    <input id=${id} type="password" autocomplete="current-password" required value=${value} ref=${inputRef}
      onInput=${(e) => onInput(e.target.value)}
      aria-invalid=${error ? "true" : undefined} aria-describedby=${describedBy(id, error)} />
  <//>`;
}

function sizeText(bytes) {
  if (!bytes && bytes !== 0) return "";
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
const whenText = (date) => date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });

/** Save a Blob as a file: an object URL and a temporary download link. */
function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

function ExportPanel() {
  const [password, setPassword] = useState("");
  const [error, setError] = useState("");
  const [job, setJob] = useState(null);
  const [busy, setBusy] = useState(false);
  const [note, setNote] = useState("");
  const passwordRef = useRef(null);
  const downloadRef = useRef(null);

  useEffect(() => {
    if (!job || job.status === "ready" || job.status === "failed") return undefined;
    const timer = setTimeout(async () => {
      try {
        setJob(await api.exportStatus(job.id));
      } catch (err) {
        setError(err.message);
        setJob(null);
      }
    }, EXPORT_POLL_MS);
    return () => clearTimeout(timer);
  }, [job]);
  useEffect(() => { if (job?.status === "ready") downloadRef.current?.focus(); }, [job?.status]);

  async function start(e) {
    e.preventDefault();
    setError("");
    setNote("");
    if (!password) { setError("Enter your password to prepare your data."); passwordRef.current?.focus(); return; }
    setBusy(true);
    try {
      setJob(await api.startExport(password));
      setPassword("");
    } catch (err) {
      if (err.status === 429 && err.retryAfter !== null) {
        setError(`You asked for a copy less than 24 hours ago. The next one is possible after ${
          whenText(new Date(Date.now() + err.retryAfter * 1000))}.`);
      } else {
        setError(err.message);
      }
      passwordRef.current?.focus();
    } finally {
      setBusy(false);
    }
  }
  async function download() {
    setNote("Downloading…");
    try {
      saveBlob(await api.downloadExport(job.id), EXPORT_FILE_NAME);
      setNote("Downloaded.");
    } catch (err) {
      setNote("");
      setError(err.message);
    }
  }
  const working = job && (job.status === "pending" || job.status === "running");
  return html`<section class="card" aria-labelledby="export-h">
    <h2 id="export-h">Download my data</h2>
    <p>A zip file with your account, profile, photos, likes, matches and conversations, each file explained
      in its README. Preparing it takes a moment; you can ask for one copy every 24 hours.</p>
    ${!job || job.status === "failed" ? html`<form onSubmit=${start} novalidate>
        <${PasswordField} id="export-password" error=${error} value=${password} onInput=${setPassword}
          inputRef=${passwordRef} />
        ${job?.status === "failed" && html`<p class="error" role="alert">Preparing your data failed. Please try again.</p>`}
        <button class="primary" type="submit" disabled=${busy}>Prepare my data</button>
      </form>` : null}
    ${working && html`<div class="export-progress">
        <progress aria-label="Preparing your data"></progress>
        <p role="status">${job.status === "running" ? "Packing your data…" : "Waiting to start…"}</p>
      </div>`}
    ${job?.status === "ready" && html`<div class="export-ready">
        <p role="status">Your data is ready${job.size_bytes != null ? ` (${sizeText(job.size_bytes)})` : ""}.
          ${job.expires_at && ` You can download it until ${whenText(new Date(job.expires_at))}.`}</p>
        <div class="actions">
          <button type="button" class="primary" ref=${downloadRef} onClick=${download}>Download the zip file</button>
          <span class="ok" aria-live="polite">${note}</span>
        </div>
        ${error && html`<p class="error" role="alert">${error}</p>`}
      </div>`}
  </section>`;
}

function DeletePanel() {
  const [password, setPassword] = useState("");
  const [error, setError] = useState("");
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const passwordRef = useRef(null);
  const confirmRef = useRef(null);
  useEffect(() => { if (confirming) confirmRef.current?.focus(); }, [confirming]);

  function ask(e) {
    e.preventDefault();
    setError("");
    if (!password) { setError("Enter your password to delete your account."); passwordRef.current?.focus(); return; }
    setConfirming(true);
  }
  function back() {
    setConfirming(false);
    setTimeout(() => passwordRef.current?.focus(), 0);
  }
  async function erase() {
    setBusy(true);
    // The server closes this tab's socket when the account goes; closed first,
    // it does not try to renew a session that no longer exists.
    rt.stop();
    try {
      await api.deleteAccount(password);
      go("discover");
      toast("Your account has been deleted.");
    } catch (err) {
      if (api.accessToken) rt.start();
      setError(err.message);
      setBusy(false);
      back();
    }
  }
  return html`<section class="card danger-zone" aria-labelledby="delete-h">
    <h2 id="delete-h">Delete my account</h2>
    <p>This deletes your profile, photos, likes, matches and the messages you sent, at once and for good.
      The people you matched with will no longer see you. It cannot be undone: download your data first if you
      want a copy.</p>
    <form onSubmit=${ask} novalidate>
      <${PasswordField} id="delete-password" error=${error} value=${password} onInput=${setPassword}
        inputRef=${passwordRef} />
      ${!confirming && html`<button class="secondary danger" type="submit">Delete my account…</button>`}
    </form>
    ${confirming && html`<div class="confirm" role="group" aria-labelledby="confirm-h">
        <p class="strong" id="confirm-h">Delete your account and everything in it, for good?</p>
        <div class="actions">
          <button type="button" class="primary danger-fill" ref=${confirmRef} disabled=${busy} onClick=${erase}>
            Yes, delete my account</button>
          <button type="button" class="secondary" disabled=${busy} onClick=${back}>Cancel</button>
        </div>
      </div>`}
  </section>`;
}

function AccountScreen() {
  const s = useStore();
  useEffect(() => { scrollTo(0, 0); }, []); // arriving from the bottom of the profile
  return html`<main id="main" class="page">
    <p><a href="#/profile">← Back to your profile</a></p>
    <h1>Your data and account</h1>
    <p class="muted">Signed in as <strong>${s.me?.email}</strong></p>
    <${ExportPanel} />
    <${DeletePanel} />
  </main>`;
}

// -- discovery -------------------------------------------------------------------

function Carousel({ name, photos }) {
  const [i, setI] = useState(0);
  if (!photos.length) return html`<div class="carousel empty" aria-hidden="true">${name.slice(0, 1).toUpperCase()}</div>`;
  const at = Math.min(i, photos.length - 1);
  return html`<div class="carousel" role="group" aria-roledescription="carousel" aria-label=${`Photos of ${name}`}>
    <img src=${photos[at].url} alt=${`${name}, photo ${at + 1} of ${photos.length}`} />
    ${photos.length > 1 && html`<div class="carousel-nav">
      <button type="button" class="icon" aria-label="Previous photo" disabled=${at === 0} onClick=${() => setI(at - 1)}>‹</button>
      <span class="dots" aria-hidden="true">${photos.map((_, k) => html`<span class=${k === at ? "dot on" : "dot"}></span>`)}</span>
      <button type="button" class="icon" aria-label="Next photo" disabled=${at === photos.length - 1} onClick=${() => setI(at + 1)}>›</button>
    </div>`}
  </div>`;
}

function DiscoverScreen() {
  const s = useStore();
  const [filters, setFilters] = useState({});
  const [cards, setCards] = useState(null);
  const [error, setError] = useState("");
  async function load(f = filters) {
    setError("");
    try { setCards((await api.discover(f)).items); } catch (e) {
      setCards([]);
      setError(e.code === "profile_required" ? "Create your profile first to discover people." : e.message);
    }
  }
  useEffect(() => { if (s.me?.profile) load(); else setCards([]); }, [s.me?.profile?.updated_at]);
  function applyFilters(e) {
    e.preventDefault();
    const f = Object.fromEntries([...new FormData(e.target)].filter(([, v]) => v !== ""));
    setFilters(f);
    load(f);
  }
  async function act(card, like) {
    try {
      await likeOrPass(card, like);
      setCards((cs) => cs.filter((c) => c.user_id !== card.user_id));
    } catch (e) { setError(e.message); }
  }
  return html`<main id="main" class="page">
    <h1>Discover</h1>
    <details class="card filters">
      <summary>Filters</summary>
      <form onSubmit=${applyFilters} class="row wrap">
        <${Field} id="f-min" label="Min age"><input id="f-min" name="min_age" type="number" min="18" max="120" value=${filters.min_age ?? ""} /><//>
        <${Field} id="f-max" label="Max age"><input id="f-max" name="max_age" type="number" min="18" max="120" value=${filters.max_age ?? ""} /><//>
        <${Field} id="f-gender" label="Show">
          <select id="f-gender" name="gender"><option value="">Everyone I'm interested in</option>
            ${GENDERS.map((g) => html`<option value=${g} selected=${filters.gender === g}>${label(g)}</option>`)}</select>
        <//>
        <${Field} id="f-dist" label="Within (km)"><input id="f-dist" name="max_distance_km" type="number" min="1" max="20000" value=${filters.max_distance_km ?? ""} /><//>
        <div class="actions"><button class="secondary" type="submit">Apply filters</button></div>
      </form>
    </details>
    ${error && html`<p class="error" role="alert">${error} ${!s.me?.profile && html`<a href="#/profile">Go to your profile</a>`}</p>`}
    ${cards === null ? html`<p class="muted">Loading…</p>` : !cards.length && !error
      ? html`<div class="empty-state"><p>No one new right now.</p><p class="muted">Try wider filters, or come back later.</p></div>` : null}
    <ul class="cards">
      ${(cards ?? []).map((c) => html`<${PersonCard} key=${c.user_id} card=${c} onAct=${act} />`)}
    </ul>
  </main>`;
}

/** Like or pass someone; a like that makes a match says so, with a way into the chat. */
async function likeOrPass(card, like) {
  const r = like ? await api.like(card.user_id) : await api.pass(card.user_id);
  if (r && r.matched) {
    toast(`It's a match with ${card.display_name}!`, "match", "chat/" + r.conversation_id);
    loadLists().catch(() => {});
  }
}

/** A person to like or pass: photos, who they are, and how well you might fit
 * (the top reason only, or with `allReasons` every one). */
function PersonCard({ card: c, onAct, allReasons = false }) {
  const id = "p-" + c.user_id;
  const distance = c.distance_km !== null ? distanceText(c.distance_km) : null;
  return html`<li class="card person">
    <article aria-labelledby=${id}>
      <${Carousel} name=${c.display_name} photos=${c.photos} />
      <div class="person-body">
        <h2 id=${id}>${c.display_name}<span class="age">, ${c.age}</span></h2>
        ${distance && html`<p class="muted">${distance}</p>`}
        ${c.compatibility && html`<${Compatibility} compat=${c.compatibility} all=${allReasons} shown=${distance} />`}
        ${c.bio && html`<p class="bio">${c.bio}</p>`}
        ${c.interests.length > 0 && html`<ul class="tags" aria-label="Interests">${c.interests.map((t) => html`<li>${t}</li>`)}</ul>`}
        <div class="actions split">
          <button type="button" class="secondary" aria-describedby=${id} onClick=${() => onAct(c, false)}>Pass</button>
          <button type="button" class="primary" aria-describedby=${id} onClick=${() => onAct(c, true)}>Like</button>
        </div>
      </div>
    </article>
  </li>`;
}

/** "87% compatible" and why; a reason the card already shows (the distance) is not repeated. */
function Compatibility({ compat, all, shown }) {
  const reasons = compat.reasons.filter((r) => r !== shown);
  const score = html`<span class="score">${compat.score}% compatible</span>`;
  if (!all) return html`<p class="compat small">${score}${reasons[0] && html`<span class="muted"> · ${reasons[0]}</span>`}</p>`;
  return html`<div class="compat">
    <p>${score}</p>
    ${reasons.length > 0 && html`<ul class="reasons" aria-label="Why you might get along">
      ${reasons.map((r) => html`<li>${r}</li>`)}</ul>`}
  </div>`;
}

// -- today's suggestions ---------------------------------------------------------

function TodayScreen() {
  const s = useStore();
  const [today, setToday] = useState(null);
  const [acted, setActed] = useState(0);
  const [error, setError] = useState("");
  const hasProfile = Boolean(s.me?.profile);
  useEffect(() => {
    if (!hasProfile) return;
    setError("");
    api.suggestions().then(setToday, (e) => { setToday({ date: null, items: [] }); setError(e.message); });
    if (state.assessment === undefined) loadAssessment().catch(() => {});
  }, [s.me?.profile?.updated_at]);
  async function act(card, like) {
    try {
      await likeOrPass(card, like);
      setToday((t) => ({ ...t, items: t.items.filter((c) => c.user_id !== card.user_id) }));
      setActed((n) => n + 1);
    } catch (e) { setError(e.message); }
  }
  const notTaken = s.assessment && !s.assessment.result;
  const takeIt = html`<a href="#/assessment">Take the assessment</a>`;
  return html`<main id="main" class="page">
    <h1>Today</h1>
    ${today?.date && html`<p class="muted">Your suggestions for <time datetime=${today.date}>${dayText(today.date)}</time>.
      A new list comes every day.</p>`}
    ${!hasProfile && html`<p class="error" role="alert">Create your profile first to get suggestions.
      <a href="#/profile">Go to your profile</a></p>`}
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${hasProfile && today === null && html`<p class="muted">Loading…</p>`}
    ${today && !today.items.length && !error && html`<div class="empty-state">
      <p>${acted ? "That's everyone for today — check back tomorrow." : "No suggestions today — check back tomorrow."}</p>
      ${notTaken && html`<p class="muted">${takeIt} so we can suggest people who fit the way you relate.</p>`}
    </div>`}
    ${today?.items.length > 0 && notTaken && html`<p class="tip small">${takeIt} for suggestions that fit you better.</p>`}
    <ul class="cards">
      ${(today?.items ?? []).map((c) => html`<${PersonCard} key=${c.user_id} card=${c} onAct=${act} allReasons />`)}
    </ul>
  </main>`;
}

// -- the assessment -----------------------------------------------------------------

const assessmentPitch = (count) => `${count} short statements about closeness, a few minutes. Your result stays `
  + "private: it helps us suggest people who fit the way you relate.";
const unansweredText = (count) => `Answer every statement to see your result (${count} left).`;

/** On your profile: your result, or an invitation to take the assessment. Right
 * after you first saved your profile it is the next step, shown just below the
 * form with "Skip for now"; otherwise it sits below the photos. */
function AssessmentCard() {
  const s = useStore();
  const [error, setError] = useState("");
  const heading = useRef(null);
  useEffect(() => { if (state.assessment === undefined) loadAssessment().catch((e) => setError(e.message)); }, []);
  const result = s.assessment?.result;
  const offer = s.onboarding && s.assessment && !result;
  useEffect(() => { if (offer) heading.current?.focus(); }, [offer]);
  if (error) return html`<section class="card"><p class="error" role="alert">${error}</p></section>`;
  if (!s.assessment || (!result && s.assessmentSkipped)) return null;
  if (!result) {
    return html`<section class=${"card invite" + (offer ? " offer" : "")} aria-labelledby="assessment-h">
      ${offer && html`<p class="kicker">Next step · optional</p>`}
      <h2 id="assessment-h" tabindex="-1" ref=${heading}>How do you relate?</h2>
      <p>${assessmentPitch(s.assessment.items.length)}</p>
      <div class="actions">
        <a class="button primary" href="#/assessment">Take the assessment</a>
        ${offer && html`<button type="button" class="link" onClick=${() => update({ onboarding: false, assessmentSkipped: true })}>
          Skip for now</button>`}
      </div>
    </section>`;
  }
  const retakeAt = new Date(result.retake_after);
  return html`<section class="card" aria-labelledby="assessment-h">
    <h2 id="assessment-h">How you relate</h2>
    <${AssessmentResult} result=${result} scale=${s.assessment.scale} />
    <div class="actions">
      <a class="button secondary" href="#/assessment">Retake</a>
      <p class="hint">${retakeAt > Date.now() ? `You can retake it once a day: next after ${whenText(retakeAt)}.`
        : "You can retake it once a day."}</p>
    </div>
  </section>`;
}

/** Your style, your two scores as bars, what they suggest; only you see this. */
function AssessmentResult({ result, scale }) {
  return html`<div class="result">
    <p class="kicker">Your attachment style</p>
    <p class="style-name">${STYLE_NAMES[result.style] ?? label(result.style)}</p>
    <dl class="dimensions">
      <${Dimension} name="Anxiety" about="worry about being let down" value=${result.anxiety} scale=${scale} />
      <${Dimension} name="Avoidance" about="need for distance" value=${result.avoidance} scale=${scale} />
    </dl>
    <ul class="insights">${result.insights.map((line) => html`<li>${line}</li>`)}</ul>
    <p class="private small"><strong>Only you can see this.</strong> Nobody else sees your style or scores; they only
      shape whom we suggest to you.</p>
  </div>`;
}

function Dimension({ name, about, value, scale }) {
  const share = (value - scale.min) / (scale.max - scale.min);
  const level = value >= (scale.min + scale.max) / 2 ? "high" : "low";
  return html`<div class="dimension">
    <dt>${name} <span class="muted small">(${about})</span></dt>
    <dd>
      <span class="bar" aria-hidden="true"><span class="fill" style=${{ width: `${Math.round(share * 100)}%` }}></span></span>
      <span class="small">${value.toFixed(1)} of ${scale.max}, ${level}</span>
    </dd>
  </div>`;
}

/** One statement: a 1–7 radio group, its ends labelled. */
function Statement({ item, n, scale, value, missing, onAnswer }) {
  const name = "q-" + item.id;
  const points = Array.from({ length: scale.max - scale.min + 1 }, (_, k) => scale.min + k);
  const end = (k) => (k === scale.min ? label(scale.min_label) : k === scale.max ? label(scale.max_label) : "");
  return html`<fieldset class=${"statement" + (missing ? " missing" : "")} id=${name}
      aria-describedby=${missing ? name + "-error" : undefined}>
    <legend><span class="q-num">${n}.</span> ${item.text}</legend>
    <div class="scale">
      <div class="points">
      ${points.map((k) => html`<label class="point">
        <input type="radio" name=${name} value=${k} checked=${value === k}
          aria-label=${end(k) ? `${k}, ${end(k)}` : undefined} onChange=${() => onAnswer(item.id, k)} />
        <span class="dot-choice">${k}</span>
      </label>`)}
      </div>
      <div class="scale-ends" aria-hidden="true"><span>${end(scale.min)}</span><span>${end(scale.max)}</span></div>
    </div>
    ${missing && html`<p class="error" id=${name + "-error"}>Choose an answer.</p>`}
  </fieldset>`;
}

function AssessmentScreen() {
  const s = useStore();
  const [answers, setAnswers] = useState({});
  const [missing, setMissing] = useState([]);
  const [error, setError] = useState("");
  const [loadError, setLoadError] = useState("");
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState(null);
  const resultHeading = useRef(null);
  useEffect(() => {
    scrollTo(0, 0);
    loadAssessment().catch((e) => setLoadError(e.message));
  }, []);
  useEffect(() => { if (done) { scrollTo(0, 0); resultHeading.current?.focus(); } }, [done]);
  const a = s.assessment;

  function answer(id, k) {
    setAnswers((old) => ({ ...old, [id]: k }));
    setMissing((old) => old.filter((x) => x !== id));
  }
  function flag(ids) {
    setMissing(ids);
    document.querySelector(`#q-${CSS.escape(ids[0])} input`)?.focus();
  }
  async function submit(e) {
    e.preventDefault();
    setError("");
    const left = a.items.map((q) => q.id).filter((id) => !(id in answers));
    if (left.length) {
      flag(left);
      setError(unansweredText(left.length));
      return;
    }
    setBusy(true);
    try {
      const result = await api.submitAssessment(answers);
      update({ assessment: { ...state.assessment, result }, onboarding: false });
      setDone(result);
    } catch (err) {
      if (err.code === RETAKE_TOO_SOON) {
        const next = err.retryAfter !== null ? ` Your next chance is after ${whenText(new Date(Date.now() + err.retryAfter * 1000))}.` : "";
        setError(`You can retake the assessment once a day.${next} Your current result stays as it is.`);
      } else {
        const named = new Set(err.message.split(/[^\w]+/));
        const ids = a.items.map((q) => q.id).filter((id) => named.has(id));
        if (ids.length) flag(ids);
        setError(ids.length ? unansweredText(ids.length) : err.message);
      }
    } finally {
      setBusy(false);
    }
  }

  if (done) {
    return html`<main id="main" class="page">
      <h1 tabindex="-1" ref=${resultHeading}>Your result</h1>
      <section class="card" aria-label="Your result"><${AssessmentResult} result=${done} scale=${a.scale} /></section>
      <div class="actions">
        <a class="button primary" href="#/today">See today's suggestions</a>
        <a class="button secondary" href="#/profile">Back to your profile</a>
      </div>
    </main>`;
  }
  const total = a?.items.length ?? 0;
  const answered = a ? a.items.filter((q) => q.id in answers).length : 0;
  const retaking = Boolean(a?.result);
  return html`<main id="main" class="page">
    <div class="title-row">
      <h1>How do you relate?</h1>
      ${retaking ? html`<a href="#/profile">Keep my current result</a>`
        : html`<a href="#/today" onClick=${() => update({ onboarding: false, assessmentSkipped: true })}>Skip for now</a>`}
    </div>
    ${a && html`<p class="lede">${assessmentPitch(total)} There are no right answers: say how much each statement
      sounds like you.</p>`}
    ${loadError && html`<p class="error" role="alert">${loadError}</p>`}
    ${!a && !loadError && html`<p class="muted">Loading…</p>`}
    ${a && html`<form class="card assessment" onSubmit=${submit} novalidate aria-label="The assessment">
      <div class="assessment-progress">
        <progress max=${total} value=${answered} aria-labelledby="answered"></progress>
        <span id="answered" class="small">${answered} of ${total} answered</span>
      </div>
      ${a.items.map((q, i) => html`<${Statement} key=${q.id} item=${q} n=${i + 1} scale=${a.scale} value=${answers[q.id]}
        missing=${missing.includes(q.id)} onAnswer=${answer} />`)}
      <div class="actions">
        <button class="primary" type="submit" disabled=${busy} aria-describedby=${error ? "assessment-error" : undefined}>
          See my result</button>
      </div>
      ${error && html`<p class="error" id="assessment-error" role="alert">${error}</p>`}
    </form>`}
  </main>`;
}

// -- matches and inbox -------------------------------------------------------------

function presenceText(p) {
  if (!p) return "";
  return p.online ? "Online" : p.last_seen ? `Last seen ${timeAgo(p.last_seen)}` : "Offline";
}

function MatchesScreen() {
  const s = useStore();
  return html`<main id="main" class="page">
    <h1>Matches</h1>
    ${!s.matches.length ? html`<div class="empty-state"><p>No matches yet.</p><p class="muted">Like someone in Discover; when they like you back, they appear here.</p></div>`
    : html`<ul class="list card">${s.matches.map((m) => html`<li key=${m.match_id}>
        <a class="list-item" href=${"#/chat/" + encodeURIComponent(m.conversation_id)}>
          <span class="avatar-wrap"><${Avatar} name=${m.user.display_name} />
            ${m.presence?.online && html`<span class="online-dot" aria-hidden="true"></span>`}</span>
          <span class="grow"><span class="name">${m.user.display_name ?? "Someone"}</span>
            <span class="muted small presence">${presenceText(m.presence) || `Matched ${timeAgo(m.created_at)}`}</span></span>
        </a></li>`)}</ul>`}
  </main>`;
}

function InboxScreen() {
  const s = useStore();
  return html`<main id="main" class="page">
    <h1>Chats</h1>
    ${!s.conversations.length ? html`<div class="empty-state"><p>No conversations yet.</p><p class="muted">Say hello to one of your matches.</p></div>`
    : html`<ul class="list card">${s.conversations.map((c) => html`<li key=${c.conversation_id}>
        <a class="list-item" href=${"#/chat/" + encodeURIComponent(c.conversation_id)}>
          <${Avatar} name=${c.user.display_name} />
          <span class="grow"><span class="name">${c.user.display_name ?? "Someone"}</span>
            <span class=${"preview small" + (c.unread_count ? " strong" : " muted")}>${c.last_message
              ? (c.last_message.sender_id === api.userId ? "You: " : "") + c.last_message.text : "New match. Say hello!"}</span></span>
          <span class="meta">${c.last_message && html`<span class="muted small">${timeAgo(c.last_message.created_at)}</span>`}
            ${c.unread_count > 0 && html`<span class="badge" aria-label=${`${c.unread_count} unread`}>${c.unread_count}</span>`}</span>
        </a></li>`)}</ul>`}
  </main>`;
}

// -- conversation --------------------------------------------------------------------

function ConversationScreen({ cid }) {
  const s = useStore();
  const conv = s.conversations.find((c) => c.conversation_id === cid);
  const match = s.matches.find((m) => m.conversation_id === cid);
  const known = useRef(null); // the other person, remembered once the match has ended
  if (conv?.user ?? match?.user) known.current = conv?.user ?? match?.user;
  const other = known.current;
  const list = listFor(cid);
  const logRef = useRef(null);
  const anchor = useRef(null); // {id, offset}: the message kept in place while older ones load
  const stick = useRef(true);
  const lastTyping = useRef(0);
  const [divider, setDivider] = useState(null);
  const [loading, setLoading] = useState(false);
  const [text, setText] = useState("");
  const [panel, setPanel] = useState(null);
  const [note, setNote] = useState("");
  const messages = list.sorted();
  const pending = [...list.pending.values()].filter((p) => !messages.some((m) => m.client_id === p.client_id));

  useEffect(() => {
    let gone = false;
    setDivider(null);
    api.messages(cid, { limit: PAGE }).then((page) => {
      if (gone) return;
      const unread = state.conversations.find((c) => c.conversation_id === cid)?.unread_count ?? 0;
      list.add(page.items);
      const theirs = list.sorted().filter((m) => m.sender_id !== api.userId);
      if (unread > 0 && theirs.length) setDivider(theirs[Math.max(0, theirs.length - unread)].id);
      if (!state.olderCursor.has(cid)) state.olderCursor.set(cid, page.next_cursor);
      stick.current = true;
      update();
    }).catch((e) => setNote(e.message));
    return () => { gone = true; };
  }, [cid]);

  // Read receipts: mark what is shown as read, while the page is visible.
  const newestTheirs = [...messages].reverse().find((m) => m.sender_id !== api.userId);
  useEffect(() => {
    if (!newestTheirs || document.visibilityState !== "visible") return;
    const c = state.conversations.find((x) => x.conversation_id === cid);
    if (c && c.unread_count === 0 && c._readUpTo >= newestTheirs.id) return;
    const mark = rt.ready ? rt.read(cid, newestTheirs.id) : api.markRead(cid, newestTheirs.id);
    mark.then(() => update({ conversations: state.conversations.map((x) => x.conversation_id === cid
      ? { ...x, unread_count: 0, _readUpTo: newestTheirs.id } : x) })).catch(() => {});
  }, [newestTheirs?.id, s.status]);

  useLayoutEffect(() => {
    const el = logRef.current;
    if (!el) return;
    const a = anchor.current;
    const node = a && el.querySelector(`[data-id="${a.id}"]`);
    if (node) el.scrollTop = node.offsetTop - a.offset;
    else if (stick.current) el.scrollTop = el.scrollHeight;
  });

  async function onScroll(e) {
    const el = e.target;
    stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    const cursor = state.olderCursor.get(cid);
    if (el.scrollTop > 60 || !cursor || loading) return;
    // Keep the first message in view where it is while rows are added above it.
    const first = [...el.querySelectorAll(".bubble[data-id]")].find((n) => n.offsetTop + n.offsetHeight > el.scrollTop);
    anchor.current = first ? { id: first.dataset.id, offset: first.offsetTop - el.scrollTop } : null;
    setLoading(true);
    try {
      const page = await api.messages(cid, { limit: PAGE, cursor });
      state.olderCursor.set(cid, page.next_cursor);
      list.add(page.items);
      update();
    } catch (err) { setNote(err.message); } finally {
      setLoading(false);
      requestAnimationFrame(() => { anchor.current = null; });
    }
  }

  function submit(e) {
    e.preventDefault();
    const t = text.trim();
    if (!t) return;
    setText("");
    stick.current = true;
    send(cid, t);
  }
  function typing(e) {
    setText(e.target.value);
    const now = Date.now();
    if (rt.ready && now - lastTyping.current > TYPING_SEND_EVERY_MS) { lastTyping.current = now; rt.typing(cid).catch(() => {}); }
  }
  async function end(how) {
    try {
      if (how === "unmatch") await api.unmatch(match.match_id);
      else await api.block(other.user_id);
    } catch (e) { setNote(e.message); return; }
    setPanel(null);
    await loadLists().catch(() => {});
    toast(how === "unmatch" ? `You unmatched ${name}.` : `You blocked ${name}.`);
    go("chats");
  }
  function openPanel(which, e) {
    setPanel(which);
    e.target.closest("details")?.removeAttribute("open");
  }
  async function report(e) {
    e.preventDefault();
    const f = new FormData(e.target);
    try {
      await api.report(other.user_id, f.get("reason"), f.get("details") || "");
      setPanel(null);
      setNote("Thanks. Your report was sent to our team.");
    } catch (err) { setNote(err.message); }
  }

  const theyTyping = (s.typing[cid] ?? 0) > Date.now() - TYPING_SHOWN_MS;
  const readUpTo = s.readByThem[cid] ?? 0;
  const lastSeenMine = [...messages].reverse().find((m) => m.sender_id === api.userId && m.id <= readUpTo);
  const name = other?.display_name ?? "Conversation";
  const closed = s.listsLoaded && conv === undefined && match === undefined;

  return html`<main id="main" class="chat">
    <header class="chat-head">
      <a href="#/chats" class="back" aria-label="Back to chats">‹</a>
      <${Avatar} name=${name} />
      <div class="grow"><h1 class="chat-title">${name}</h1>
        <p class="muted small">${presenceText(match?.presence)}</p></div>
      <details class="menu">
        <summary aria-label="Conversation actions">⋯</summary>
        <div class="menu-body">
          <button type="button" class="ghost" onClick=${(e) => openPanel("report", e)} disabled=${!other}>Report</button>
          <button type="button" class="ghost" onClick=${(e) => openPanel("unmatch", e)} disabled=${!match}>Unmatch</button>
          <button type="button" class="ghost danger" onClick=${(e) => openPanel("block", e)} disabled=${!other}>Block</button>
        </div>
      </details>
    </header>
    ${panel === "report" && html`<form class="card report" onSubmit=${report} aria-label="Report">
      <${Field} id="reason" label="Reason"><select id="reason" name="reason">
        ${REPORT_REASONS.map((r) => html`<option value=${r}>${label(r)}</option>`)}</select><//>
      <${Field} id="details" label="Details (optional)"><textarea id="details" name="details" rows="2" maxlength="2000"></textarea><//>
      <div class="actions"><button class="primary" type="submit">Send report</button>
        <button type="button" class="ghost" onClick=${() => setPanel(null)}>Cancel</button></div>
    </form>`}
    ${(panel === "unmatch" || panel === "block") && html`<div class="card confirm" role="alertdialog"
        aria-labelledby="confirm-h" aria-describedby="confirm-d">
      <h2 id="confirm-h">${panel === "unmatch" ? `Unmatch ${name}?` : `Block ${name}?`}</h2>
      <p id="confirm-d">${panel === "unmatch"
        ? "This conversation ends for both of you and cannot be reopened."
        : `${name} will no longer see you or be able to message you, and this conversation ends.`}</p>
      <div class="actions"><button type="button" class="primary danger-fill" onClick=${() => end(panel)}>
          ${panel === "unmatch" ? "Yes, unmatch" : "Yes, block"}</button>
        <button type="button" class="ghost" onClick=${() => setPanel(null)}>Cancel</button></div>
    </div>`}
    ${note && html`<p class="notice" role="status">${note}</p>`}
    ${closed && html`<p class="notice" role="status">This conversation has ended.</p>`}
    <div class="log" role="log" aria-label=${`Messages with ${name}`} aria-live="polite" tabindex="0" ref=${logRef} onScroll=${onScroll}>
      ${loading && html`<p class="muted center small">Loading earlier messages…</p>`}
      ${messages.length === 0 && pending.length === 0 && html`<p class="muted center">You matched! Say hello.</p>`}
      ${messages.map((m) => html`
        ${divider === m.id && html`<div class="divider" role="separator"><span>New messages</span></div>`}
        <div key=${m.id} class=${"bubble " + (m.sender_id === api.userId ? "mine" : "theirs")} data-id=${m.id}>
          <p class="text">${m.text}</p>
          <span class="stamp">${clock(m.created_at)}${m === lastSeenMine ? " · Seen" : m.sender_id === api.userId ? " · Sent" : ""}</span>
        </div>`)}
      ${pending.map((p) => html`<div key=${p.client_id} class=${"bubble mine " + p.state}>
          <p class="text">${p.text}</p>
          <span class="stamp">${p.state === "failed"
            ? html`<span>Not sent.${p.offline ? " You are offline; it goes out when you are back." : ""}</span> <button type="button" class="link" onClick=${() => retry(p)}>Retry</button>`
            : html`<span>Sending…</span>${s.status !== "online" && html` <button type="button" class="link" onClick=${() => retry(p)}>Retry</button>`}`}</span>
        </div>`)}
    </div>
    <p class="typing small muted" aria-live="polite">${theyTyping ? `${name} is typing…` : ""}</p>
    <form class="composer" onSubmit=${submit}>
      <label for="message" class="visually-hidden">Message</label>
      <input id="message" autocomplete="off" placeholder=${closed ? "This conversation is closed" : "Write a message"}
        value=${text} onInput=${typing} maxlength="4000" disabled=${closed} />
      <button class="primary" type="submit" disabled=${closed}>Send</button>
    </form>
  </main>`;
}

// -- shell -----------------------------------------------------------------------------

function Toasts() {
  const s = useStore();
  return html`<div class="toasts" role="status" aria-live="polite">
    ${s.toasts.map((t) => html`<div key=${t.id} class=${"toast " + t.kind}>
      <span>${t.text}</span>
      ${t.link && html`<a href=${"#/" + t.link}>Open chat</a>`}
      <button type="button" class="icon" aria-label="Dismiss" onClick=${() => update({ toasts: state.toasts.filter((x) => x.id !== t.id) })}>✕</button>
    </div>`)}
  </div>`;
}

function App() {
  const s = useStore();
  if (s.booting) return html`<p class="boot">Loading…</p>`;
  if (!s.signedIn) return html`<${AuthScreen} /><${Toasts} />`;
  const r = s.route;
  const unread = s.conversations.reduce((n, c) => n + (c.unread_count || 0), 0);
  const tab = (name, text, extra) => html`<a href=${"#/" + name} aria-current=${r.name === name || (name === "chats" && r.name === "chat") || (name === "profile" && r.name === "account") ? "page" : undefined}>${text}${extra}</a>`;
  let screen;
  if (r.name === "profile") screen = html`<${ProfileScreen} />`;
  else if (r.name === "account") screen = html`<${AccountScreen} />`;
  else if (r.name === "today") screen = html`<${TodayScreen} />`;
  else if (r.name === "assessment") screen = html`<${AssessmentScreen} />`;
  else if (r.name === "matches") screen = html`<${MatchesScreen} />`;
  else if (r.name === "chats") screen = html`<${InboxScreen} />`;
  else if (r.name === "chat" && r.id) screen = html`<${ConversationScreen} key=${r.id} cid=${r.id} />`;
  else screen = html`<${DiscoverScreen} />`;
  return html`<a class="skip" href="#main">Skip to content</a>
    <header class="top">
      <a class="brand" href="#/discover">Proximity</a>
      <nav aria-label="Main" class="tabs">
        ${tab("discover", "Discover")}${tab("today", "Today")}${tab("matches", "Matches")}
        ${tab("chats", "Chats", unread > 0 ? html` <span class="badge" aria-label=${`${unread} unread`}>${unread}</span>` : null)}
        ${tab("profile", "Profile")}
      </nav>
      <button type="button" class="ghost small-btn" onClick=${() => api.logout().catch(() => {})}>Log out</button>
    </header>
    ${s.status === "reconnecting" && html`<div class="banner" role="status">Reconnecting…</div>`}
    ${screen}
    <${Toasts} />`;
}

render(html`<${App} />`, document.getElementById("app"));

trackSessionHint(api, globalThis.localStorage ?? null);
resumeSession(api, globalThis.localStorage ?? null)
  .then((ok) => (ok ? startSession() : update({ booting: false })))
  .catch(() => update({ booting: false }));
