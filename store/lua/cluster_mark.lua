-- Redis Cluster, one side of a match: remember in this session that it was
-- nudged with the other one, and nudge this session's sockets if that is news.
-- Each side keeps its own mark, so each gets at most one nudge per pair.
-- KEYS[1] this session's hash
-- ARGV[1] secret hash presented ("" for the detected side)
-- ARGV[2] this session's generation, as read a moment ago
-- ARGV[3] the other session's generation
-- ARGV[4] this token's channel (same slot; '' when the session's channel is
--         elsewhere, after a rotation: the caller publishes)
-- ARGV[5] the event (a bus nudge, protocol/bus.py)
-- Returns 1 marked and nudged, 0 already marked, -1 the session ended or changed.

local s = redis.call('HMGET', KEYS[1], 'secret', 'gid')
if not s[2] or s[2] ~= ARGV[2] or (ARGV[1] ~= '' and s[1] ~= ARGV[1]) then
  return -1
end
if redis.call('HSETNX', KEYS[1], 'n:' .. ARGV[3], 1) == 0 then
  return 0
end
if ARGV[4] ~= '' then
  redis.call('SPUBLISH', ARGV[4], ARGV[5])
end
return 1
