-- The per-request check of an authenticated call, in one round trip.
-- KEYS[1] the user's cached tokens_valid_after (unix ms; "-" for a gone user)
-- KEYS[2] this window's API rate-limit counter of the user (absent: the call is not counted)
-- ARGV[1] the window's length in ms (the counter's lifetime)
-- Returns {cut_off, hits}: cut_off is nil when nothing is cached, hits 0 when not counted.

local cut_off = redis.call('GET', KEYS[1])
local hits = 0
if KEYS[2] then
  hits = redis.call('INCR', KEYS[2])
  if hits == 1 then
    redis.call('PEXPIRE', KEYS[2], ARGV[1])
  end
end
return {cut_off, hits}
