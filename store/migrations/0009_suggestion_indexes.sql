-- Daily suggestions at scale: indexes that let candidate picking skip rows
-- without a join over every account.

-- Accounts that must not be suggested (deleted or banned): few, so the
-- candidate queries anti-join this small index instead of all of users.
CREATE INDEX users_gone_idx ON users (id) WHERE deleted_at IS NOT NULL OR banned_at IS NOT NULL;

-- Located profiles as points (lon, lat) in a GiST index: a viewer with a
-- maximum distance reads exactly the rows in its bounding box, instead of
-- the whole latitude band profiles_lat_lon_idx would scan.
CREATE INDEX profiles_point_idx ON profiles USING gist (point(lon, lat)) WHERE lat IS NOT NULL;

-- Profiles without a location, in key order: a viewer with a maximum
-- distance walks these besides the bounding box on profiles_point_idx
-- (a distance preference applies only when both locations are known).
CREATE INDEX profiles_no_location_idx ON profiles (user_id) WHERE lat IS NULL;

-- Who reported whom: a person's own reports, excluded from their suggestions.
CREATE INDEX reports_reporter_idx ON reports (reporter, reported);
