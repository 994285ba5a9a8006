-- Several messages published in one command (one Redis only: channels are not keys).
-- ARGV: channel, payload, channel, payload, ...
-- Returns how many were given.

for i = 1, #ARGV, 2 do
  redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
end
return #ARGV / 2
