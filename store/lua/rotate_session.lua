-- Move a session to a new BLE token in one round trip (one Redis).
-- KEYS[1] old session hash, KEYS[2] new session hash, KEYS[3] active-sessions zset
-- ARGV[1] secret hash presented   ARGV[2] old token   ARGV[3] new token
-- ARGV[4] grace period (ms) during which the old token still forwards
-- Returns {-1} unauthorised (or old token is itself an alias), {0} new token in
-- use, {1, expires_at_ms}.
--
-- The hash moves whole (secret, generation, categories, TTL and the pair marks
-- 'n:<generation>', so a pair nudged once is not nudged again). The session
-- remembers its first token ('home'): its sockets listen on that token's
-- channel. The old key becomes a forwarding alias: for the home token it is
-- kept (never matching after the grace) for the rest of the session, so nobody
-- else can register that token and listen on the session's channel; any
-- later token's alias expires with the grace.

local s = redis.call('HMGET', KEYS[1], 'secret', 'gid', 'to', 'home', 'expires_at')
if not s[1] or s[1] ~= ARGV[1] or s[3] then
  return {-1}
end
if KEYS[1] == KEYS[2] or redis.call('EXISTS', KEYS[2]) == 1 then
  return {0}
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then
  return {-1}
end
local home = s[4] or ARGV[2]
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[2], 'home', home)

local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local grace = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'secret', s[1], 'gid', s[2], 'to', ARGV[3], 'home', home,
           'expires_at', s[5], 'grace_until', now_ms + grace)
if home == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ttl)
else
  redis.call('PEXPIRE', KEYS[1], math.max(math.min(grace, ttl), 1))
end

local score = redis.call('ZSCORE', KEYS[3], ARGV[2]) or s[5]
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZADD', KEYS[3], score, ARGV[3])
return {1, s[5]}
