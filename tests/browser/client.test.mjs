// Unit tests of the DOM-free client (proximity_server/web/static/client.js):
// access-token renewal before expiry (handed to the live socket with the
// `refresh` command), the 4401 close path, and the quiet first visit.
// Run: node --test tests/browser/client.test.mjs
import { afterEach, test, mock } from "node:test";
import assert from "node:assert/strict";

import {
  ApiClient, ApiError, Realtime, humane, resumeSession, trackSessionHint, SESSION_HINT, CLOSE_AUTH_EXPIRED, fieldOf,
} from "../../proximity_server/web/static/client.js";

const TTL_S = 900;

/** A fetch that answers /auth/* with fresh tokens (or a status) and records calls. */
function fakeFetch(answers = {}) {
  const calls = [];
  let n = 0;
  const fetch = async (url, init) => {
    calls.push({ url, init });
    const path = new URL(url, "http://x").pathname;
    const status = answers[path] ?? 200;
    n += 1;
    const body = status === 200
      ? { user_id: "u1", access_token: `token-${n}`, expires_in: TTL_S }
      : { error: { code: "unauthorized", message: "bad refresh token" } };
    return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
  };
  return { fetch, calls };
}

/** A WebSocket double that answers every command with ok. */
class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeSocket.all.push(this);
    queueMicrotask(() => { this.readyState = 1; this.onopen?.(); });
  }
  send(data) {
    const frame = JSON.parse(data);
    this.sent.push(frame);
    const result = frame.type === "resume" ? { last_event_id: 0 } : null;
    queueMicrotask(() => this.onmessage?.({ data: JSON.stringify({ type: "result", id: frame.id, ok: true, result }) }));
  }
  close(code = 1000) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({ code });
  }
}

function memoryStorage() {
  const m = new Map();
  return { getItem: (k) => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, String(v)), removeItem: (k) => m.delete(k) };
}

// Every client made here, so each test ends its renewal timer (else the run never exits).
const made = [];
const newApi = (options) => { const api = new ApiClient(options); made.push(api); return api; };
afterEach(() => { for (const api of made.splice(0)) api._clearTokens(); });

const settle = async () => { for (let i = 0; i < 20; i += 1) await Promise.resolve(); };
const waitFor = async (check) => {
  for (let i = 0; i < 300; i += 1) { if (check()) return; await new Promise((r) => setTimeout(r, 10)); }
  assert.fail("condition never became true");
};

test("the access token is renewed at 80% of its lifetime, not before", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const { fetch, calls } = fakeFetch();
    const api = newApi({ fetch });
    await api.login("a@example.com", "pw");
    assert.equal(api.accessToken, "token-1");
    mock.timers.tick(TTL_S * 1000 * 0.8 - 1);
    await settle();
    assert.equal(calls.length, 1);
    mock.timers.tick(1);
    await settle();
    assert.equal(calls.length, 2);
    assert.match(calls[1].url, /\/auth\/refresh$/);
    assert.equal(calls[1].init.headers["X-Refresh-Cookie"], "1");
    assert.equal(api.accessToken, "token-2");
    // ...and the next renewal is scheduled from the new token.
    mock.timers.tick(TTL_S * 1000 * 0.8);
    await settle();
    assert.equal(calls.length, 3);
  } finally {
    mock.timers.reset();
  }
});

test("a signed-out session stops the renewal timer", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const { fetch, calls } = fakeFetch();
    const api = newApi({ fetch });
    await api.login("a@example.com", "pw");
    await api.logout();
    mock.timers.tick(TTL_S * 1000);
    await settle();
    assert.deepEqual(calls.map((c) => new URL(c.url, "http://x").pathname), ["/auth/login", "/auth/logout"]);
  } finally {
    mock.timers.reset();
  }
});

test("a renewed token is handed to the live socket with the refresh command", async () => {
  FakeSocket.all = [];
  const { fetch } = fakeFetch();
  const api = newApi({ fetch });
  await api.login("a@example.com", "pw");
  const rt = new Realtime(api, { url: "ws://x/ws", WebSocket: FakeSocket, storage: null });
  rt.start();
  await waitFor(() => rt.ready);
  assert.deepEqual(FakeSocket.all[0].sent.map((f) => f.type), ["auth", "resume"]);
  assert.equal(FakeSocket.all[0].sent[0].access_token, "token-1");
  await api.refresh();
  await waitFor(() => FakeSocket.all[0].sent.length === 3);
  assert.deepEqual(FakeSocket.all[0].sent[2], { id: 3, type: "refresh", access_token: "token-2" });
  assert.equal(FakeSocket.all.length, 1); // the same socket, no reconnect
  rt.stop();
});

test("close code 4401 renews through /auth/refresh, then reconnects with the new token", async () => {
  FakeSocket.all = [];
  const { fetch, calls } = fakeFetch();
  const api = newApi({ fetch });
  await api.login("a@example.com", "pw");
  const rt = new Realtime(api, { url: "ws://x/ws", WebSocket: FakeSocket, storage: null, random: () => 0 });
  rt.start();
  await waitFor(() => rt.ready);
  FakeSocket.all[0].close(CLOSE_AUTH_EXPIRED);
  await waitFor(() => FakeSocket.all.length === 2 && rt.ready);
  assert.match(calls.at(-1).url, /\/auth\/refresh$/);
  assert.equal(FakeSocket.all[1].sent[0].type, "auth");
  assert.equal(FakeSocket.all[1].sent[0].access_token, "token-2");
  rt.stop();
});

test("close code 4401 with a refused refresh signs out and stays closed", async () => {
  FakeSocket.all = [];
  const { fetch } = fakeFetch({ "/auth/refresh": 401 });
  const api = newApi({ fetch });
  await api.login("a@example.com", "pw");
  const seen = [];
  api.onAuthChange((signedIn) => seen.push(signedIn));
  const rt = new Realtime(api, { url: "ws://x/ws", WebSocket: FakeSocket, storage: null, random: () => 0 });
  rt.start();
  await waitFor(() => rt.ready);
  FakeSocket.all[0].close(CLOSE_AUTH_EXPIRED);
  await waitFor(() => rt.status === "offline");
  assert.deepEqual(seen, [false]);
  assert.equal(api.accessToken, null);
  await new Promise((r) => setTimeout(r, 600)); // longer than the first backoff
  assert.equal(FakeSocket.all.length, 1);
});

test("a first visit (no session hint) asks the server nothing", async () => {
  const { fetch, calls } = fakeFetch();
  const api = newApi({ fetch });
  assert.equal(await resumeSession(api, memoryStorage()), false);
  assert.equal(calls.length, 0);
});

test("the hint follows sign-in and sign-out; a refused refresh is quiet and forgets it", async () => {
  const storage = memoryStorage();
  const { fetch, calls } = fakeFetch({ "/auth/refresh": 401 });
  const api = newApi({ fetch });
  trackSessionHint(api, storage);
  await api.login("a@example.com", "pw");
  assert.equal(storage.getItem(SESSION_HINT), "1");
  await api.logout();
  assert.equal(storage.getItem(SESSION_HINT), null);

  storage.setItem(SESSION_HINT, "1"); // e.g. the cookie expired since
  const fresh = newApi({ fetch });
  assert.equal(await resumeSession(fresh, storage), false); // resolves, never throws
  assert.equal(storage.getItem(SESSION_HINT), null);
  const before = calls.length;
  assert.equal(await resumeSession(fresh, storage), false);
  assert.equal(calls.length, before);
});

test("a resumed session renews from the cookie", async () => {
  const storage = memoryStorage();
  storage.setItem(SESSION_HINT, "1");
  const { fetch } = fakeFetch();
  const api = newApi({ fetch });
  assert.equal(await resumeSession(api, storage), true);
  assert.equal(api.accessToken, "token-1");
  api._clearTokens();
});

test("server messages read as the form labels them", () => {
  assert.equal(humane("'location.lat' must be between -90 and 90"), "Latitude must be between -90 and 90");
  assert.equal(humane("'display_name' must be 1–50 characters"), "Display name must be 1–50 characters");
  assert.equal(humane("wrong email or password"), "Wrong email or password");
  assert.equal(new ApiError(400, "invalid_field", "'birthdate' is not plausible").message, "Birthdate is not plausible");
});

test("sign-in errors name the field they concern", () => {
  assert.equal(fieldOf("unauthorized", "wrong email or password"), "password");
  assert.equal(fieldOf("conflict", "an account with this email already exists"), "email");
  assert.equal(fieldOf("invalid_field", "you must be at least 18"), "birthdate");
  assert.equal(fieldOf("invalid_field", "'location.lat' must be between -90 and 90"), "location");
});

test("a wrong password on a data-rights call costs no token refresh; a 429 carries Retry-After", async () => {
  const calls = [];
  const replies = {
    "/auth/login": () => new Response(JSON.stringify({ user_id: "u1", access_token: "t1", expires_in: TTL_S }), { status: 200 }),
    "/me": () => new Response(JSON.stringify({ error: { code: "unauthorized", message: "wrong password" } }), { status: 401 }),
    "/me/export": () => new Response(JSON.stringify({ error: { code: "rate_limited", message: "one export per 24 hours" } }),
      { status: 429, headers: { "Retry-After": "3600" } }),
  };
  const fetch = async (url, init) => { calls.push({ url, init }); return replies[new URL(url, "http://x").pathname](); };
  const api = new ApiClient({ fetch });
  await api.login("a@example.com", "pw");
  await assert.rejects(api.deleteAccount("nope"), (e) => e instanceof ApiError && e.status === 401 && e.field === "password");
  assert.equal(api.accessToken, "t1"); // still signed in
  assert.ok(!calls.some((c) => c.url.endsWith("/auth/refresh")));
  await assert.rejects(api.startExport("pw"), (e) => e.status === 429 && e.retryAfter === 3600);
  api._clearTokens();
});
