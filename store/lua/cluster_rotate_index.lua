-- Redis Cluster, step 4 of a rotation ({stats} slot): the live-session index
-- follows the session to its new token (a rotation is not a new session).
-- KEYS[1] active-sessions zset   ARGV[1] old token   ARGV[2] new token
-- ARGV[3] the session's expiry (ms), used if the old token is not indexed

local score = redis.call('ZSCORE', KEYS[1], ARGV[1]) or ARGV[3]
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], score, ARGV[2])
return 1
