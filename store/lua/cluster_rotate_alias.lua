-- Redis Cluster, step 3 of a rotation (old token's slot): turn the old
-- session into a forwarding alias, if it is still the session step 1 read.
-- KEYS[1] old session hash
-- ARGV[1] secret hash presented   ARGV[2] generation read in step 1
-- ARGV[3] new token   ARGV[4] first token ('home')   ARGV[5] old token
-- ARGV[6] grace period (ms)
-- Returns {-1} changed meanwhile (the caller removes step 2's copy), else
-- {1, field, 1, ...}: the pair marks, including any added since step 1.

local s = redis.call('HMGET', KEYS[1], 'secret', 'gid', 'to', 'expires_at')
if s[1] ~= ARGV[1] or s[2] ~= ARGV[2] or s[3] then
  return {-1}
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then
  return {-1}
end
local reply = {1}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 'n:' then
    reply[#reply + 1] = all[i]
    reply[#reply + 1] = all[i + 1]
  end
end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local grace = tonumber(ARGV[6])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'secret', s[1], 'gid', s[2], 'to', ARGV[3], 'home', ARGV[4],
           'expires_at', s[4], 'grace_until', now_ms + grace)
if ARGV[4] == ARGV[5] then
  redis.call('PEXPIRE', KEYS[1], ttl)
else
  redis.call('PEXPIRE', KEYS[1], math.max(math.min(grace, ttl), 1))
end
return reply
