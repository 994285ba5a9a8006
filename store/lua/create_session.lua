-- Create or refresh a proximity session in one round trip.
-- KEYS[1] session hash, KEYS[2] active-sessions zset, KEYS[3] pending counters hash
-- ARGV[1] secret hash of the new session      ARGV[2] secret hash presented ("" if none)
-- ARGV[3] interests hash                      ARGV[4] categories, comma-separated, sorted
-- ARGV[5] TTL in seconds                      ARGV[6] BLE token (zset member)
-- ARGV[7] session generation id (new)         ARGV[8] user id ("" if none)
-- Returns {status, expires_at_ms, generation, first token of a rotated session or ''}:
-- status 1 created, 2 refreshed, 0 conflict.

local status, expires_ms, gid, now_s, home = write_session(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[7], ARGV[8])
if status == 0 then
  return {0, 0, '', ''}
end
redis.call('ZADD', KEYS[2], expires_ms, ARGV[6])
if status == 1 then
  local day = utc_day(now_s)
  local hour = utc_hour(now_s)
  redis.call('HINCRBY', KEYS[3], 's|' .. day, 1)
  redis.call('HINCRBY', KEYS[3], 'h|s|' .. hour, 1)
  for category in string.gmatch(ARGV[4], '[^,]+') do
    redis.call('HINCRBY', KEYS[3], 'c|' .. day .. '|' .. category, 1)
    redis.call('HINCRBY', KEYS[3], 'h|c|' .. hour .. '|' .. category, 1)
  end
end
return {status, expires_ms, gid, home}
