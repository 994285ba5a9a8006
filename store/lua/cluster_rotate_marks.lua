-- Redis Cluster, step 4 of a rotation (new token's slot): add the pair marks
-- the old session gained between steps 1 and 3.
-- KEYS[1] new session hash   ARGV[1] generation   ARGV[2..] field, value, ...

if redis.call('HGET', KEYS[1], 'gid') ~= ARGV[1] then
  return 0
end
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
return 1
