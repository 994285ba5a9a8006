-- Redis Cluster, step 1 of a session write: the session hash alone (its slot).
-- Same contract as create_session.lua, without the live-session index and the
-- counters, which live in the {stats} slot (cluster_session_index.lua).
-- KEYS[1] session hash
-- ARGV[1] secret hash of the new session      ARGV[2] secret hash presented ("" if none)
-- ARGV[3] interests hash                      ARGV[4] categories, comma-separated, sorted
-- ARGV[5] TTL in seconds                      ARGV[6] session generation id (new)
-- ARGV[7] user id ("" if none)
-- Returns {status, expires_at_ms, generation, first token of a rotated session or ''}:
-- status 1 created, 2 refreshed, 0 conflict.

local status, expires_ms, gid, _, home = write_session(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
return {status, expires_ms, gid, home}
