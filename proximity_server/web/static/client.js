/**
 * The JavaScript client of the proximity server: its HTTP API and its
 * realtime socket protocol, with no DOM access (usable in a page, a worker,
 * or a test runner that injects `fetch`, `XMLHttpRequest` and `WebSocket`).
 *
 * Authentication in the browser: the access token lives in memory only; the
 * refresh token lives in the HttpOnly cookie `px_refresh` (Path=/auth) that
 * the server sets when a request carries `X-Refresh-Cookie: 1`. After a
 * reload, {@link ApiClient#refresh} turns that cookie into a new access token.
 *
 * Realtime ({@link Realtime}): one socket per tab; `auth` frame, then
 * `resume {last_event_id}` after every (re)connect, so nothing is lost or
 * repeated; durable events (`message`, `match`, `unmatch`, `read`) are
 * delivered once each, in `event_id` order. Reconnects use exponential
 * backoff with jitter; close code 4401 renews the token through the cookie
 * first. The access token is renewed before it expires and handed to the
 * live socket with the `refresh` command.
 *
 * @module client
 */

/** Header that switches auth endpoints to the refresh-cookie mode. */
export const REFRESH_COOKIE_HEADER = "X-Refresh-Cookie";
/** Socket close code: credential expired or revoked. */
export const CLOSE_AUTH_EXPIRED = 4401;
/** Socket close code: the account was banned; sign out, do not reconnect. */
export const CLOSE_BANNED = 4403;
/** Socket close code: the server asks for a reconnect and resume. */
export const CLOSE_RESYNC = 4009;
/** The most photos a profile may hold. */
export const MAX_PHOTOS = 6;
/** Reasons a report may give. */
export const REPORT_REASONS = ["spam", "harassment", "inappropriate_content", "fake_profile", "underage", "scam", "other"];
/** Genders a profile may state and look for. */
export const GENDERS = ["woman", "man", "nonbinary"];
/** The value questions of a profile and their choices, in order (each may also be null: not said). */
export const VALUE_CHOICES = {
  family_plans: ["wants_children", "open_to_children", "does_not_want_children"],
  smoking: ["never", "sometimes", "regularly"],
  drinking: ["never", "socially", "often"],
  faith_importance: ["not_important", "somewhat_important", "very_important"],
};
/** The server's time zone for a profile that never set one. */
export const DEFAULT_TIME_ZONE = "UTC";
/** Error code of an assessment retaken within a day of the last one (429, with Retry-After). */
export const RETAKE_TOO_SOON = "retake_too_soon";

const RENEW_AT_FRACTION = 0.8; // renew the access token at 80% of its lifetime
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 15000;
const PING_EVERY_MS = 25000;
const COMMAND_TIMEOUT_MS = 10000;

/**
 * @typedef {{code: string, message: string}} ErrorBody
 * @typedef {{photo_id: string, url: string, thumb_url: string, position: number}} Photo
 * @typedef {{lat: number, lon: number}} Location
 * @typedef {{family_plans?: string|null, smoking?: string|null, drinking?: string|null,
 *   faith_importance?: string|null, age_min?: number|null, age_max?: number|null,
 *   max_distance_km?: number|null, time_zone?: string, crossed_paths?: boolean}} Preferences
 * @typedef {{display_name: string, birthdate: string, age?: number, gender: string,
 *   interested_in: string[], bio: string, interests: string[], location: Location|null,
 *   photos?: Photo[]} & Preferences} Profile
 * @typedef {{score: number, reasons: string[]}} Compatibility
 * @typedef {{user_id: string, display_name: string, age: number, gender: string, bio: string,
 *   interests: string[], photos: Photo[], distance_km: number|null,
 *   compatibility?: Compatibility|null}} PublicProfile
 * @typedef {{anxiety: number, avoidance: number, style: string, insights: string[], taken_at: string,
 *   retake_after: string}} AssessmentResult
 * @typedef {{scale: {min: number, max: number, min_label: string, max_label: string},
 *   items: {id: string, text: string}[], result: AssessmentResult|null}} Assessment
 * @typedef {{date: string, items: PublicProfile[]}} Suggestions
 * @typedef {{user_id: string, email: string, created_at: string, profile: Profile|null}} Me
 * @typedef {{id: number, conversation_id: string, sender_id: string, client_id: string,
 *   text: string, created_at: string}} Message
 * @typedef {{online: boolean, last_seen: string|null}} Presence
 * @typedef {{match_id: string, conversation_id: string, created_at: string,
 *   user: {user_id: string, display_name: string|null}, presence?: Presence}} Match
 * @typedef {{conversation_id: string, match_id: string, created_at: string, last_activity_at: string,
 *   user: {user_id: string, display_name: string|null}, last_message: Message|null,
 *   unread_count: number}} Conversation
 * @typedef {{items: T[], next_cursor: string|null}} Page
 * @template T
 * @typedef {{min_age?: number, max_age?: number, gender?: string, max_distance_km?: number,
 *   limit?: number, cursor?: string}} DiscoverFilters
 * @typedef {{event_id: number, type: string, created_at: string} & Record<string, any>} ServerEvent
 * @typedef {{id: string, status: "pending"|"running"|"ready"|"failed", created_at?: string,
 *   download_url?: string, expires_at?: string, size_bytes?: number}} ExportJob
 */

/** An error reply from the server: the `{error: {code, message}}` envelope. */
export class ApiError extends Error {
  /**
   * @param {number} status HTTP status (0 for a network failure)
   * @param {string} code the envelope's code
   * @param {string} message the envelope's message
   * @param {number|null} [retryAfter] seconds from the reply's `Retry-After` header, when it had one
   */
  constructor(status, code, message, retryAfter = null) {
    super(humane(message));
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    /** Seconds to wait before asking again (429 replies), or null. */
    this.retryAfter = retryAfter;
    /** The request field the error concerns, when the message names one. */
    this.field = fieldOf(code, message);
  }
}

const FIELD_NAMES = {
  display_name: "Display name", birthdate: "Birthdate", gender: "Gender", interested_in: "Interested in",
  bio: "Bio", interests: "Interests", "location.lat": "Latitude", "location.lon": "Longitude", location: "Location",
  email: "Email", password: "Password", text: "The message",
  family_plans: "Family plans", smoking: "Smoking", drinking: "Drinking", faith_importance: "Importance of faith",
  age_min: "Min age", age_max: "Max age", max_distance_km: "Max distance", time_zone: "Time zone",
  crossed_paths: "Crossed paths",
};

/**
 * A server message as a person reads it: field names as the form labels
 * them (`'location.lat' must be…` → `Latitude must be…`), a capital first.
 * @param {string} message @returns {string}
 */
export function humane(message) {
  const out = String(message).replace(/'([a-z_]+(?:\.[a-z]+)?)'/g, (all, name) => FIELD_NAMES[name] ?? all);
  return out.charAt(0).toUpperCase() + out.slice(1);
}

/**
 * The field an error concerns: named in quotes by validation messages
 * (`'display_name' must be…`), or implied by the code.
 * @param {string} code
 * @param {string} message
 * @returns {string|null}
 */
export function fieldOf(code, message) {
  if (code === "weak_password") return "password";
  if (/wrong email or password/i.test(message)) return "password"; // sign-in: the usual culprit
  if (code === "email_taken" || /email/i.test(message)) return "email";
  if (/password/i.test(message)) return "password";
  const quoted = /'([a-z_]+)(?:\.[a-z]+)?'/.exec(message);
  if (quoted) return quoted[1];
  if (/^interests/.test(message)) return "interests";
  if (/at least 18|you must be/i.test(message)) return "birthdate";
  return null;
}

/**
 * Storage key of a hint (not a secret) that this browser signed in, so that a
 * first visit does not ask the server for a refresh it cannot have (the
 * refresh cookie is HttpOnly: the page cannot see whether it exists).
 */
export const SESSION_HINT = "px.session";

/**
 * Keep {@link SESSION_HINT} in step with the session: set on sign-in,
 * removed on sign-out.
 * @param {ApiClient} api @param {Storage|null} storage
 */
export function trackSessionHint(api, storage) {
  return api.onAuthChange((signedIn) => {
    try { if (signedIn) storage?.setItem(SESSION_HINT, "1"); else storage?.removeItem(SESSION_HINT); } catch { /* off */ }
  });
}

/**
 * On page load: renew the session from the refresh cookie, but only when
 * this browser signed in before (a signed-out visitor makes no request, so
 * no 401). A refused refresh (cookie expired or revoked) is a quiet
 * "signed out" and forgets the hint, so the next visit asks nothing.
 * @param {ApiClient} api @param {Storage|null} storage
 * @returns {Promise<boolean>} whether a session was resumed
 */
export async function resumeSession(api, storage) {
  let hinted = false;
  try { hinted = Boolean(storage?.getItem(SESSION_HINT)); } catch { /* storage off */ }
  if (!hinted) return false;
  let ok = false;
  try { ok = await api.refresh(); } catch { return false; } // network: keep the hint, try next time
  if (!ok) { try { storage?.removeItem(SESSION_HINT); } catch { /* off */ } }
  return ok;
}

/** A random id for `client_id` and command ids. @returns {string} */
export function randomId() {
  if (globalThis.crypto?.randomUUID) return globalThis.crypto.randomUUID();
  return Date.now().toString(36) + Math.random().toString(36).slice(2);
}

/**
 * The HTTP API. Every method returns the decoded JSON reply, or throws
 * {@link ApiError}. A 401 on a signed-in call renews the access token through
 * the refresh cookie once and retries.
 */
export class ApiClient {
  /**
   * @param {{baseUrl?: string, fetch?: typeof fetch, XMLHttpRequest?: typeof XMLHttpRequest,
   *   now?: () => number}} [options]
   */
  constructor(options = {}) {
    this.baseUrl = options.baseUrl ?? "";
    this._fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this._XHR = options.XMLHttpRequest ?? globalThis.XMLHttpRequest;
    this._now = options.now ?? Date.now;
    /** @type {string|null} */ this.accessToken = null;
    /** @type {string|null} */ this.userId = null;
    /** Unix ms when the access token expires. */ this.expiresAt = 0;
    /** @type {Promise<boolean>|null} */ this._refreshing = null;
    /** @type {Set<(signedIn: boolean) => void>} */ this._authListeners = new Set();
    /** @type {Set<(token: string) => void>} */ this._tokenListeners = new Set();
    this._renewTimer = null;
  }

  /** Called with `true` on sign-in and `false` when the session ends. */
  onAuthChange(fn) { this._authListeners.add(fn); return () => this._authListeners.delete(fn); }
  /** Called with every new access token (the socket forwards it). */
  onToken(fn) { this._tokenListeners.add(fn); return () => this._tokenListeners.delete(fn); }

  /** @param {{user_id: string, access_token: string, expires_in: number}} pair */
  _setTokens(pair) {
    const wasSignedIn = this.accessToken !== null;
    this.accessToken = pair.access_token;
    this.userId = pair.user_id;
    this.expiresAt = this._now() + pair.expires_in * 1000;
    clearTimeout(this._renewTimer);
    this._renewTimer = setTimeout(() => { this.refresh().catch(() => {}); },
      Math.max(1000, pair.expires_in * 1000 * RENEW_AT_FRACTION));
    for (const fn of this._tokenListeners) fn(pair.access_token);
    if (!wasSignedIn) for (const fn of this._authListeners) fn(true);
  }

  _clearTokens() {
    const wasSignedIn = this.accessToken !== null;
    this.accessToken = null;
    this.userId = null;
    this.expiresAt = 0;
    clearTimeout(this._renewTimer);
    if (wasSignedIn) for (const fn of this._authListeners) fn(false);
  }

  /**
   * One HTTP call.
   * @param {string} method
   * @param {string} path
   * @param {{body?: any, query?: Record<string, any>, auth?: boolean, cookie?: boolean, retry?: boolean}} [opts]
   * @returns {Promise<any>}
   */
  async request(method, path, opts = {}) {
    const { body, query, auth = true, cookie = false, retry = true } = opts;
    let url = this.baseUrl + path;
    if (query) {
      const qs = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") qs.set(k, String(v));
      const s = qs.toString();
      if (s) url += "?" + s;
    }
    /** @type {Record<string, string>} */
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (cookie) headers[REFRESH_COOKIE_HEADER] = "1";
    if (auth && this.accessToken) headers.Authorization = `Bearer ${this.accessToken}`;
    let resp;
    try {
      resp = await this._fetch(url, {
        method, headers, credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, "network", "The server cannot be reached. Check your connection.");
    }
    if (resp.status === 401 && auth && retry && this.accessToken) {
      if (await this.refresh()) return this.request(method, path, { ...opts, retry: false });
    }
    return decode(resp);
  }

  // -- accounts ---------------------------------------------------------------

  /** Create an account and sign in. @param {string} email @param {string} password */
  async register(email, password) {
    const pair = await this.request("POST", "/auth/register", { body: { email, password }, auth: false, cookie: true });
    this._setTokens(pair);
    return pair;
  }

  /** Sign in. @param {string} email @param {string} password */
  async login(email, password) {
    const pair = await this.request("POST", "/auth/login", { body: { email, password }, auth: false, cookie: true });
    this._setTokens(pair);
    return pair;
  }

  /**
   * Renew the access token from the refresh cookie (rotating it). Concurrent
   * callers share one request. Resolves false (and signs out) when the
   * session is gone; network failures reject.
   * @returns {Promise<boolean>}
   */
  refresh() {
    if (!this._refreshing) {
      this._refreshing = (async () => {
        try {
          const pair = await this.request("POST", "/auth/refresh", { body: {}, auth: false, cookie: true });
          this._setTokens(pair);
          return true;
        } catch (e) {
          if (e instanceof ApiError && e.status >= 400 && e.status < 500 && e.status !== 429) {
            this._clearTokens();
            return false;
          }
          throw e;
        } finally {
          this._refreshing = null;
        }
      })();
    }
    return this._refreshing;
  }

  /** End this session (clears the cookie). */
  async logout() {
    try {
      await this.request("POST", "/auth/logout", { body: {}, auth: false, cookie: true });
    } finally {
      this._clearTokens();
    }
  }

  /** End every session of this account, on every device. */
  async logoutAll() {
    try {
      await this.request("POST", "/auth/logout-all");
      await this.request("POST", "/auth/logout", { body: {}, auth: false, cookie: true }).catch(() => {});
    } finally {
      this._clearTokens();
    }
  }

  /**
   * A call that carries the current password again. A 401 there usually
   * means a wrong password, which must not cost a token refresh; any other
   * 401 (an expired token) renews through the cookie and retries once.
   * @param {string} method @param {string} path @param {string} password
   * @returns {Promise<any>}
   */
  async _withPassword(method, path, password) {
    const call = () => this.request(method, path, { body: { password }, retry: false });
    try {
      return await call();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401 && e.field !== "password" && this.accessToken && await this.refresh()) {
        return call();
      }
      throw e;
    }
  }

  // -- your data ----------------------------------------------------------------

  /**
   * Ask for a copy of all this account's data (a zip built in the background).
   * One export per 24 hours: another throws an {@link ApiError} with status
   * 429 and `retryAfter` (seconds). A wrong password is a 401 whose `field`
   * is "password".
   * @param {string} password the current password
   * @returns {Promise<ExportJob>} the job, usually still "pending"
   */
  startExport(password) { return this._withPassword("POST", "/me/export", password); }

  /**
   * Where an export stands: "pending" | "running" | "ready" | "failed";
   * a ready one also has `download_url`, `expires_at` and `size_bytes`.
   * @param {string} exportId
   * @returns {Promise<ExportJob>}
   */
  exportStatus(exportId) { return this.request("GET", `/me/export/${encodeURIComponent(exportId)}`); }

  /**
   * Fetch a ready export's zip. It needs the bearer token, so a plain link
   * cannot download it: the caller saves the returned Blob (e.g. through an
   * object URL).
   * @param {string} exportId
   * @returns {Promise<Blob>} the zip file
   */
  async downloadExport(exportId) {
    const url = `${this.baseUrl}/me/export/${encodeURIComponent(exportId)}/download`;
    const get = () => this._fetch(url, {
      headers: this.accessToken ? { Authorization: `Bearer ${this.accessToken}` } : {}, credentials: "same-origin",
    });
    let resp;
    try {
      resp = await get();
      if (resp.status === 401 && this.accessToken && await this.refresh()) resp = await get();
    } catch (e) {
      if (e instanceof ApiError) throw e;
      throw new ApiError(0, "network", "The server cannot be reached. Check your connection.");
    }
    if (!resp.ok) return decode(resp);
    return resp.blob();
  }

  /**
   * Erase this account for good (profile, photos, likes, matches, the
   * messages it sent), then end the session here: auth listeners hear
   * `false`. A wrong password is a 401 whose `field` is "password" and
   * leaves the session as it was.
   * @param {string} password the current password
   * @returns {Promise<void>}
   */
  async deleteAccount(password) {
    await this._withPassword("DELETE", "/me", password);
    this._clearTokens();
  }

  // -- profile and photos -----------------------------------------------------

  /** @returns {Promise<Me>} */ me() { return this.request("GET", "/me"); }
  /** @returns {Promise<Profile|null>} */ async getProfile() { return (await this.me()).profile; }
  /** Replace the whole profile. @param {Profile} p @returns {Promise<Profile>} */
  putProfile(p) { return this.request("PUT", "/me/profile", { body: p }); }
  /** Change some fields. @param {Partial<Profile>} p @returns {Promise<Profile>} */
  patchProfile(p) { return this.request("PATCH", "/me/profile", { body: p }); }
  /** @param {string} userId @returns {Promise<PublicProfile>} */
  publicProfile(userId) { return this.request("GET", `/profiles/${encodeURIComponent(userId)}`); }
  /** @returns {Promise<{items: Photo[]}>} */ listPhotos() { return this.request("GET", "/me/photos"); }

  /**
   * Upload a photo (multipart field `file`), reporting progress 0..1.
   * @param {Blob} file
   * @param {(fraction: number) => void} [onProgress]
   * @returns {Promise<Photo>}
   */
  uploadPhoto(file, onProgress, retry = true) {
    return new Promise((resolve, reject) => {
      const xhr = new this._XHR();
      xhr.open("POST", this.baseUrl + "/me/photos");
      if (this.accessToken) xhr.setRequestHeader("Authorization", `Bearer ${this.accessToken}`);
      xhr.setRequestHeader("Accept", "application/json");
      if (onProgress) xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
      xhr.onerror = () => reject(new ApiError(0, "network", "The upload failed. Check your connection."));
      xhr.onload = async () => {
        if (xhr.status === 401 && retry && await this.refresh().catch(() => false)) {
          this.uploadPhoto(file, onProgress, false).then(resolve, reject);
          return;
        }
        let data = null;
        try { data = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch { /* not JSON */ }
        if (xhr.status >= 200 && xhr.status < 300) { onProgress?.(1); resolve(data); }
        else reject(errorFrom(xhr.status, data));
      };
      const form = new FormData();
      form.append("file", file, /** @type {any} */ (file).name || "photo");
      xhr.send(form);
    });
  }

  /** @param {string[]} photoIds the new order @returns {Promise<{items: Photo[]}>} */
  reorderPhotos(photoIds) { return this.request("PUT", "/me/photos/order", { body: photoIds }); }
  /** @param {string} photoId */
  deletePhoto(photoId) { return this.request("DELETE", `/me/photos/${encodeURIComponent(photoId)}`); }

  // -- discovery, likes, matches ----------------------------------------------

  /** @param {DiscoverFilters} [filters] @returns {Promise<Page<PublicProfile>>} */
  discover(filters = {}) { return this.request("GET", "/discover", { query: filters }); }
  /** @param {string} userId @returns {Promise<{matched: boolean, match_id?: string, conversation_id?: string}>} */
  like(userId) { return this.request("POST", "/likes", { body: { user_id: userId, action: "like" } }); }
  /** @param {string} userId */
  pass(userId) { return this.request("POST", "/likes", { body: { user_id: userId, action: "pass" } }); }
  /** @param {string} [cursor] @returns {Promise<Page<Match>>} */
  matches(cursor) { return this.request("GET", "/matches", { query: { cursor } }); }
  /** @param {string} matchId */
  unmatch(matchId) { return this.request("DELETE", `/matches/${encodeURIComponent(matchId)}`); }
  /** @param {string} userId */
  block(userId) { return this.request("POST", "/blocks", { body: { user_id: userId } }); }
  /** @param {string} userId */
  unblock(userId) { return this.request("DELETE", `/blocks/${encodeURIComponent(userId)}`); }
  /** @param {string} userId @param {string} reason one of REPORT_REASONS @param {string} [details] */
  report(userId, reason, details = "") {
    return this.request("POST", "/reports", { body: { user_id: userId, reason, details } });
  }

  // -- compatibility ----------------------------------------------------------

  /** The assessment's statements, its scale, and your current result (null before the first). @returns {Promise<Assessment>} */
  assessment() { return this.request("GET", "/me/assessment"); }
  /**
   * Answer every statement; a retake within a day of the last is refused (429 `retake_too_soon`).
   * @param {Record<string, number>} answers statement id → 1..7 @returns {Promise<AssessmentResult>}
   */
  submitAssessment(answers) { return this.request("PUT", "/me/assessment", { body: { answers } }); }
  /** Today's suggested people, best first, each with `compatibility`. @returns {Promise<Suggestions>} */
  suggestions() { return this.request("GET", "/suggestions"); }

  // -- conversations ----------------------------------------------------------

  /** @param {string} [cursor] @returns {Promise<Page<Conversation>>} */
  conversations(cursor) { return this.request("GET", "/conversations", { query: { cursor } }); }
  /**
   * A page of messages, newest first; pass `next_cursor` for older ones.
   * @param {string} conversationId @param {{cursor?: string, limit?: number}} [opts]
   * @returns {Promise<Page<Message>>}
   */
  messages(conversationId, opts = {}) {
    return this.request("GET", `/conversations/${encodeURIComponent(conversationId)}/messages`, { query: opts });
  }
  /** Send over HTTP (idempotent by clientId). @returns {Promise<Message>} */
  sendMessage(conversationId, text, clientId) {
    return this.request("POST", `/conversations/${encodeURIComponent(conversationId)}/messages`,
      { body: { client_id: clientId, text } });
  }
  /** Mark read up to a message id. */
  markRead(conversationId, upTo) {
    return this.request("POST", `/conversations/${encodeURIComponent(conversationId)}/read`, { body: { up_to: upTo } });
  }
}

/** @param {Response} resp */
async function decode(resp) {
  if (resp.status === 204) return null;
  let data = null;
  const text = await resp.text();
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (resp.ok) return data;
  const after = Number.parseInt(resp.headers?.get?.("Retry-After") ?? "", 10);
  throw errorFrom(resp.status, data, Number.isFinite(after) ? after : null);
}

/** @param {number} status @param {any} data @param {number|null} [retryAfter] */
function errorFrom(status, data, retryAfter = null) {
  const err = data && data.error;
  if (err && typeof err.code === "string") {
    return new ApiError(status, err.code, String(err.message ?? err.code), retryAfter);
  }
  return new ApiError(status, "http_" + status, `The server answered ${status}.`, retryAfter);
}

/**
 * The realtime socket. Events: `status` ("connecting" | "online" |
 * "reconnecting" | "offline"), `event` (each durable event once, in order),
 * `message`, `match`, `unmatch`, `read` (the same, by type), `typing`,
 * `presence`, `nudge` (ephemeral), `resync` (a resume was truncated: reload
 * lists), `connected` (after each successful resume).
 */
export class Realtime {
  /**
   * @param {ApiClient} api
   * @param {{url?: string, WebSocket?: typeof WebSocket, random?: () => number,
   *   storage?: Storage|null}} [options]
   */
  constructor(api, options = {}) {
    this.api = api;
    this.url = options.url ?? defaultSocketUrl();
    this._WS = options.WebSocket ?? globalThis.WebSocket;
    this._random = options.random ?? Math.random;
    this._storage = options.storage === undefined ? globalThis.localStorage ?? null : options.storage;
    /** @type {WebSocket|null} */ this.ws = null;
    this.status = "offline";
    this.attempt = 0;
    this._wanted = false;
    this._ready = false;
    this._nextId = 1;
    /** @type {Map<string|number, {resolve: Function, reject: Function, timer: any}>} */
    this._pending = new Map();
    /** @type {Map<string, Set<Function>>} */ this._listeners = new Map();
    this._retryTimer = null;
    this._pingTimer = null;
    this.lastEventId = null;
    this._offToken = api.onToken((token) => {
      if (this._ready) this.command("refresh", { access_token: token }).catch(() => {});
    });
  }

  /** Subscribe to an event; returns the unsubscribe function. */
  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return () => this._listeners.get(type)?.delete(fn);
  }

  _emit(type, data) {
    for (const fn of this._listeners.get(type) ?? []) {
      try { fn(data); } catch (e) { console.error(e); } // eslint-disable-line no-console
    }
  }

  _setStatus(status) {
    if (this.status !== status) { this.status = status; this._emit("status", status); }
  }

  get _eventKey() { return this.api.userId ? `px.last_event_id.${this.api.userId}` : null; }

  /** Open the socket (and keep it open until {@link Realtime#stop}). */
  start() {
    if (this._wanted) return;
    this._wanted = true;
    const key = this._eventKey;
    const saved = key && this._storage ? Number(this._storage.getItem(key)) : NaN;
    this.lastEventId = Number.isFinite(saved) && saved > 0 ? saved : null;
    this._connect();
  }

  /** Close the socket for good. */
  stop() {
    this._wanted = false;
    clearTimeout(this._retryTimer);
    clearInterval(this._pingTimer);
    if (this.ws) { const ws = this.ws; this.ws = null; ws.onclose = null; ws.close(1000); }
    this._failPending("stopped");
    this._ready = false;
    this._setStatus("offline");
  }

  /** Close the current socket and connect again (e.g. the network came back). */
  reconnectNow() {
    if (!this._wanted) return;
    clearTimeout(this._retryTimer);
    if (this.ws && this.ws.readyState <= 1 && this._ready) return;
    this.attempt = 0;
    if (this.ws) { const ws = this.ws; this.ws = null; ws.onclose = null; try { ws.close(); } catch { /* closing */ } }
    this._connect();
  }

  /**
   * The network is gone (the browser said so): drop the socket now rather
   * than wait for a timeout, and show "reconnecting" until it is back.
   */
  dropped() {
    if (!this._wanted || !this.ws) return;
    const ws = this.ws;
    ws.onclose = null;
    try { ws.close(); } catch { /* closing */ }
    this._onClose(ws, 1006);
  }

  _connect() {
    if (!this._wanted) return;
    if (globalThis.navigator && globalThis.navigator.onLine === false) {
      // Offline: wait for reconnectNow() from the "online" event.
      this._setStatus("reconnecting");
      return;
    }
    this._setStatus(this.attempt === 0 && this.status !== "reconnecting" ? "connecting" : "reconnecting");
    let ws;
    try { ws = new this._WS(this.url); } catch { this._scheduleReconnect(); return; }
    this.ws = ws;
    this._ready = false;
    ws.onopen = () => this._handshake(ws);
    ws.onmessage = (e) => this._onFrame(ws, e.data);
    ws.onclose = (e) => this._onClose(ws, e.code);
    ws.onerror = () => { /* onclose follows */ };
  }

  async _handshake(ws) {
    try {
      if (!this.api.accessToken || this.api.expiresAt - Date.now() < 5000) {
        if (!(await this.api.refresh())) { this.stop(); return; }
      }
      await this.command("auth", { access_token: this.api.accessToken }, ws);
      const resumed = await this.command("resume", { last_event_id: this.lastEventId }, ws);
      if (ws !== this.ws) return;
      if (this.lastEventId === null) {
        // A fresh client: from now on every reconnect replays what it missed
        // (from the server's head if it told us one, else from the start).
        this.lastEventId = resumed && typeof resumed.last_event_id === "number" ? resumed.last_event_id : 0;
      }
      this._ready = true;
      this.attempt = 0;
      clearInterval(this._pingTimer);
      this._pingTimer = setInterval(() => { this.command("ping").catch(() => {}); }, PING_EVERY_MS);
      this._setStatus("online");
      if (resumed && resumed.truncated) this._emit("resync", resumed);
      this._emit("connected", resumed);
    } catch (e) {
      if (ws === this.ws) { try { ws.close(); } catch { /* gone */ } }
    }
  }

  _onFrame(ws, data) {
    if (ws !== this.ws) return;
    let frame;
    try { frame = JSON.parse(data); } catch { return; }
    if (!frame || typeof frame !== "object") return;
    if (frame.type === "result") {
      const waiter = this._pending.get(frame.id);
      if (!waiter) return;
      this._pending.delete(frame.id);
      clearTimeout(waiter.timer);
      if (frame.ok) waiter.resolve(frame.result);
      else waiter.reject(new ApiError(200, frame.error?.code ?? "error", frame.error?.message ?? "error"));
      return;
    }
    if (typeof frame.event_id === "number") {
      // Durable: once each, in order. The server never sends an id twice on
      // one socket; this also guards across reconnects and resumes.
      if (this.lastEventId !== null && frame.event_id <= this.lastEventId) return;
      this.lastEventId = frame.event_id;
      const key = this._eventKey;
      if (key && this._storage) { try { this._storage.setItem(key, String(frame.event_id)); } catch { /* full */ } }
      this._emit("event", frame);
    }
    this._emit(frame.type, frame);
  }

  async _onClose(ws, code) {
    if (ws !== this.ws) return;
    ws.onclose = null;
    this.ws = null;
    this._ready = false;
    clearInterval(this._pingTimer);
    this._failPending("disconnected");
    if (!this._wanted) return;
    if (code === CLOSE_BANNED) { this.stop(); this.api._clearTokens(); return; }
    this._setStatus("reconnecting");
    if (code === CLOSE_AUTH_EXPIRED) {
      try {
        if (!(await this.api.refresh())) { this.stop(); return; }
      } catch { /* network: retry later */ }
    }
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    clearTimeout(this._retryTimer);
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    const delay = ceiling / 2 + this._random() * ceiling / 2; // "equal jitter"
    this.attempt += 1;
    this._retryTimer = setTimeout(() => this._connect(), delay);
  }

  _failPending(reason) {
    for (const [id, waiter] of this._pending) {
      clearTimeout(waiter.timer);
      waiter.reject(new ApiError(0, "network", reason));
      this._pending.delete(id);
    }
  }

  /** Whether commands can be sent now. */
  get ready() { return this._ready; }

  /**
   * Send one command and wait for its `result`.
   * @param {string} type @param {Record<string, any>} [fields] @param {WebSocket} [via]
   * @returns {Promise<any>}
   */
  command(type, fields = {}, via) {
    const ws = via ?? this.ws;
    if (!ws || ws.readyState !== 1 || (!via && !this._ready)) {
      return Promise.reject(new ApiError(0, "network", "not connected"));
    }
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this._pending.delete(id); reject(new ApiError(0, "timeout", "no reply")); },
        COMMAND_TIMEOUT_MS);
      this._pending.set(id, { resolve, reject, timer });
      ws.send(JSON.stringify({ id, type, ...fields }));
    });
  }

  /** @returns {Promise<Message>} */
  sendMessage(conversationId, text, clientId) {
    return this.command("send_message", { conversation_id: conversationId, text, client_id: clientId });
  }
  /** Tell the other member you are typing. */
  typing(conversationId) { return this.command("typing", { conversation_id: conversationId }); }
  /** Mark read up to a message id. */
  read(conversationId, upTo) { return this.command("read", { conversation_id: conversationId, up_to: upTo }); }
}

function defaultSocketUrl() {
  const loc = globalThis.location;
  if (!loc) return "ws://127.0.0.1/ws";
  return (loc.protocol === "https:" ? "wss://" : "ws://") + loc.host + "/ws";
}

/**
 * Messages of one conversation: keyed by server id, pending ones by
 * client_id; never a message twice, always in id order.
 */
export class MessageList {
  constructor() {
    /** @type {Map<number, Message>} */ this.byId = new Map();
    /** @type {Map<string, {client_id: string, text: string, state: "pending"|"failed", created_at: string}>} */
    this.pending = new Map();
  }

  /** Add server messages (from a page, a reply or an event). @param {Message[]} messages */
  add(messages) {
    for (const m of messages) {
      this.byId.set(m.id, m);
      this.pending.delete(m.client_id);
    }
  }

  /** @returns {Message[]} server messages, oldest first */
  sorted() { return [...this.byId.values()].sort((a, b) => a.id - b.id); }
}

/**
 * Outgoing messages not yet confirmed, kept in storage so they survive a
 * reload and are sent again (idempotently, by client_id).
 */
export class Outbox {
  /** @param {Storage|null} storage @param {string} userId */
  constructor(storage, userId) {
    this._storage = storage;
    this._key = `px.outbox.${userId}`;
  }

  /** @returns {{conversation_id: string, client_id: string, text: string, created_at: string, failed?: boolean}[]} */
  all() {
    try { return JSON.parse(this._storage?.getItem(this._key) ?? "[]") || []; } catch { return []; }
  }

  _save(items) {
    try { this._storage?.setItem(this._key, JSON.stringify(items)); } catch { /* full or disabled */ }
  }

  put(item) { this._save([...this.all().filter((i) => i.client_id !== item.client_id), item]); }
  remove(clientId) { this._save(this.all().filter((i) => i.client_id !== clientId)); }
  /** @param {string} conversationId */
  forConversation(conversationId) { return this.all().filter((i) => i.conversation_id === conversationId); }
}
