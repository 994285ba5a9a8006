-- Redis Cluster: count one new match, in the {stats} slot.
-- KEYS[1] pending counters hash

local t = redis.call('TIME')
redis.call('HINCRBY', KEYS[1], 'm|' .. utc_day(tonumber(t[1])), 1)
redis.call('HINCRBY', KEYS[1], 'h|m|' .. utc_hour(tonumber(t[1])), 1)
return 1
