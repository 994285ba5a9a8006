-- Shared prelude: the UTC calendar day (YYYY-MM-DD) of a Unix time in seconds,
-- by Howard Hinnant's civil-from-days algorithm. Counters are bucketed by it.
local function utc_day(unix_seconds)
  local z = math.floor(unix_seconds / 86400) + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02d', y, m, d)
end


-- The UTC hour (YYYY-MM-DDTHH) of a Unix time in seconds: hourly counters
-- ("h|s|HOUR", "h|m|HOUR", "h|c|HOUR|CATEGORY") feed GET /stats/history.
local function utc_hour(unix_seconds)
  return utc_day(unix_seconds) .. 'T' .. string.format('%02d', math.floor((unix_seconds % 86400) / 3600))
end
