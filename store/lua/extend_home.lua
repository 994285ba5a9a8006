-- After a rotated session's refresh: keep its first token reserved as long as
-- the session lives (its sockets listen on that token's channel).
-- KEYS[1] the first token's hash (a forwarding alias)
-- ARGV[1] the session generation   ARGV[2] the new expiry (ms)
-- Returns 1 extended, 0 not this session's alias (gone or another session).

local s = redis.call('HMGET', KEYS[1], 'gid', 'to')
if s[1] ~= ARGV[1] or not s[2] then
  return 0
end
redis.call('HSET', KEYS[1], 'expires_at', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1
