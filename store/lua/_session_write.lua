-- Shared fragment: create a session hash, or refresh it when the caller proved
-- it owns it (the secret hash presented matches). Returns status (1 created,
-- 2 refreshed, 0 conflict), the new expiry (ms), the session generation, the
-- server's time (s) and, for a rotated session, its first token ('' if none).
-- A token a session rotated away from (a forwarding alias, field 'to') is in
-- use: never created over, never refreshed.
local function write_session(key, new_secret, presented, interests_hash, categories, ttl_s, gid, user_id)
  local t = redis.call('TIME')
  local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local ttl_ms = tonumber(ttl_s) * 1000
  local expires_ms = now_ms + ttl_ms
  local existing = redis.call('HMGET', key, 'secret', 'gid', 'to', 'home')
  if existing[1] then
    if presented == '' or presented ~= existing[1] or existing[3] then
      return 0, 0, '', 0, ''
    end
    redis.call('HSET', key, 'interests_hash', interests_hash, 'interest_categories', categories,
               'expires_at', expires_ms)
    if user_id ~= '' then redis.call('HSET', key, 'user_id', user_id) end
    redis.call('PEXPIRE', key, ttl_ms)
    return 2, expires_ms, existing[2], tonumber(t[1]), existing[4] or ''
  end
  redis.call('HSET', key, 'secret', new_secret, 'gid', gid, 'interests_hash', interests_hash,
             'interest_categories', categories, 'created_at', now_ms, 'expires_at', expires_ms)
  if user_id ~= '' then redis.call('HSET', key, 'user_id', user_id) end
  redis.call('PEXPIRE', key, ttl_ms)
  return 1, expires_ms, gid, tonumber(t[1]), ''
end
