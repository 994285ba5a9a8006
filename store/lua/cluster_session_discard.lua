-- Redis Cluster: undo step 1 of a session write whose step 2 failed, so the
-- phone (which got an error, not its secret) can register the token again.
-- KEYS[1] session hash   ARGV[1] the generation step 1 created
-- Returns 1 if removed, 0 if the hash is gone or belongs to another generation.

if redis.call('HGET', KEYS[1], 'gid') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
