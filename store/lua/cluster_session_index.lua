-- Redis Cluster, step 2 of a session write, in the {stats} slot: index the
-- session by expiry and, if it was created, count it and its categories.
-- KEYS[1] active-sessions zset, KEYS[2] pending counters hash
-- ARGV[1] BLE token   ARGV[2] expires_at_ms   ARGV[3] 1 if created, 0 if refreshed
-- ARGV[4] categories, comma-separated

redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if ARGV[3] == '1' then
  local t = redis.call('TIME')
  local day = utc_day(tonumber(t[1]))
  local hour = utc_hour(tonumber(t[1]))
  redis.call('HINCRBY', KEYS[2], 's|' .. day, 1)
  redis.call('HINCRBY', KEYS[2], 'h|s|' .. hour, 1)
  for category in string.gmatch(ARGV[4], '[^,]+') do
    redis.call('HINCRBY', KEYS[2], 'c|' .. day .. '|' .. category, 1)
    redis.call('HINCRBY', KEYS[2], 'h|c|' .. hour .. '|' .. category, 1)
  end
end
return 1
