-- One hit on a fixed-window rate-limit counter, in one round trip.
-- KEYS[1] this window's counter
-- ARGV[1] the window's length in ms (the counter's lifetime, set on the first hit)
-- Returns the count after this hit.

local hits = redis.call('INCR', KEYS[1])
if hits == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return hits
