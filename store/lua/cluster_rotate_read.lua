-- Redis Cluster, step 1 of a rotation (old token's slot): check the secret
-- and read the whole session.
-- KEYS[1] old session hash   ARGV[1] secret hash presented
-- Returns {-1} unauthorised (or an alias), else {1, pttl_ms, field, value, ...}.

local s = redis.call('HMGET', KEYS[1], 'secret', 'to')
if not s[1] or s[1] ~= ARGV[1] or s[2] then
  return {-1}
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then
  return {-1}
end
local reply = {1, ttl}
for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do
  reply[#reply + 1] = v
end
return reply
