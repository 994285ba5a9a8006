-- Decide a proximity match in one round trip: authenticate the caller, read
-- both sessions, intersect categories, de-duplicate the pair, count, publish.
-- KEYS[1] own session hash, KEYS[2] detected session hash, KEYS[3] pending counters hash
-- ARGV[1] secret hash presented   ARGV[2] own token's channel   ARGV[3] detected token's channel
-- ARGV[4] category that never matches ("other")
-- ARGV[5] user channel prefix     ARGV[6] hidden-pairs set prefix
-- ARGV[7] the nudge's bus prefix ("nudge|", protocol/bus.py): the event is it and the categories
-- ARGV[8] token channel prefix (a rotated session's sockets listen on its first token's channel)
-- Returns {-1} unauthorised, {0} no match, {1, categories, nudged(0|1)} (a new
-- nudge also returns both user ids, '' when not signed in, for crossed paths),
-- or {2, own token to use, detected token to use} ('' = unchanged) when a token
-- was rotated away from less than its grace period ago: the caller asks again.

local own = redis.call('HMGET', KEYS[1], 'secret', 'gid', 'interest_categories', 'user_id', 'to', 'grace_until', 'home')
if not own[1] or own[1] ~= ARGV[1] then
  return {-1}
end
if KEYS[1] == KEYS[2] then
  return {0}
end
local other = redis.call('HMGET', KEYS[2], 'gid', 'interest_categories', 'user_id', 'to', 'grace_until', 'home')
if not other[1] then
  return {0}
end
-- A forwarding alias left by a rotation: followed during its grace period
-- (reports already on the air), never matching after it.
if own[5] or other[4] then
  local t = redis.call('TIME')
  local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local own_to, other_to = '', ''
  if own[5] then
    if now_ms >= tonumber(own[6]) then return {0} end
    own_to = own[5]
  end
  if other[4] then
    if now_ms >= tonumber(other[5]) then return {0} end
    other_to = other[4]
  end
  return {2, own_to, other_to}
end
-- Two signed-in people who blocked each other are never nudged.
if own[4] and other[3] and redis.call('SISMEMBER', ARGV[6] .. own[4], other[3]) == 1 then
  return {0}
end

local mine = {}
for category in string.gmatch(own[3], '[^,]+') do mine[category] = true end
local shared = {}
for category in string.gmatch(other[2], '[^,]+') do
  if mine[category] and category ~= ARGV[4] then shared[#shared + 1] = category end
end
if #shared == 0 then
  return {0}
end
table.sort(shared)
local csv = table.concat(shared, ',')

-- Each session remembers which sessions it was nudged with; the marks die
-- with the session, so a pair is nudged at most once per session lifetime.
if redis.call('HSETNX', KEYS[1], 'n:' .. other[1], 1) == 0 then
  return {1, csv, 0}
end
redis.call('HSET', KEYS[2], 'n:' .. own[2], 1)

local t = redis.call('TIME')
redis.call('HINCRBY', KEYS[3], 'm|' .. utc_day(tonumber(t[1])), 1)
redis.call('HINCRBY', KEYS[3], 'h|m|' .. utc_hour(tonumber(t[1])), 1)

local own_channel = own[7] and (ARGV[8] .. '{' .. own[7] .. '}') or ARGV[2]
local other_channel = other[6] and (ARGV[8] .. '{' .. other[6] .. '}') or ARGV[3]
local event = ARGV[7] .. csv
redis.call('PUBLISH', own_channel, event)
redis.call('PUBLISH', other_channel, event)
if own[4] then redis.call('PUBLISH', ARGV[5] .. own[4], event) end
if other[3] then redis.call('PUBLISH', ARGV[5] .. other[3], event) end
return {1, csv, 1, own[4] or '', other[3] or ''}
