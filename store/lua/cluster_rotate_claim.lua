-- Redis Cluster, step 2 of a rotation (new token's slot): write the session
-- under the new token, unless the token is in use.
-- KEYS[1] new session hash   ARGV[1] TTL (ms)   ARGV[2] first token ('home')
-- ARGV[3..] field, value, ... (the session as read in step 1)
-- Returns 1 written, 0 the new token is in use.

if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[1], 'home', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
