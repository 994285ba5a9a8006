-- Redis Cluster, step 1 of a session write: the session hash alone (its slot).
-- Same contract as create_session.lua, without the live-session index and the
-- counters, which live in the {stats} slot (cluster_session_index.lua).
-- KEYS[1] session hash
-- ARGV[1] secret hash of the new session      ARGV[2] secret hash presented ("" if none)
-- ARGV[3] interests hash                      ARGV[4] categories, comma-separated, sorted
-- ARGV[5] TTL in seconds                      ARGV[6] session generation id (new)
-- ARGV[7] user id ("" if none)
-- Returns {status, expires_at_ms, generation}: status 1 created, 2 refreshed, 0 conflict.

local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl_ms = tonumber(ARGV[5]) * 1000
local expires_ms = now_ms + ttl_ms

local existing = redis.call('HMGET', KEYS[1], 'secret', 'gid')
if existing[1] then
  if ARGV[2] == '' or ARGV[2] ~= existing[1] then
    return {0, 0, ''}
  end
  redis.call('HSET', KEYS[1], 'interests_hash', ARGV[3], 'interest_categories', ARGV[4],
             'expires_at', expires_ms)
  if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'user_id', ARGV[7]) end
  redis.call('PEXPIRE', KEYS[1], ttl_ms)
  return {2, expires_ms, existing[2]}
end

redis.call('HSET', KEYS[1], 'secret', ARGV[1], 'gid', ARGV[6], 'interests_hash', ARGV[3],
           'interest_categories', ARGV[4], 'created_at', now_ms, 'expires_at', expires_ms)
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'user_id', ARGV[7]) end
redis.call('PEXPIRE', KEYS[1], ttl_ms)
return {1, expires_ms, ARGV[6]}
