-- Profiles (one per user) and photo metadata. Photo bytes live in the photo
-- store (S3 or a local directory), never in PostgreSQL.

CREATE TABLE profiles (
    user_id        UUID PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    display_name   TEXT NOT NULL,
    birthdate      DATE NOT NULL,
    gender         TEXT NOT NULL CHECK (gender IN ('woman', 'man', 'nonbinary')),
    interested_in  TEXT[] NOT NULL CHECK (cardinality(interested_in) > 0),
    bio            TEXT NOT NULL DEFAULT '',
    -- Normalised interests the person typed for their profile (profile data,
    -- not proximity sessions).
    interests      TEXT[] NOT NULL DEFAULT '{}',
    lat            DOUBLE PRECISION NULL CHECK (lat BETWEEN -90 AND 90),
    lon            DOUBLE PRECISION NULL CHECK (lon BETWEEN -180 AND 180),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    CHECK ((lat IS NULL) = (lon IS NULL))
);

-- Discovery pages walk this index in keyset order: (created_at, user_id) is
-- stable while others sign up (new profiles land after every cursor).
CREATE INDEX profiles_discover_idx ON profiles (created_at, user_id);
-- Distance filter: bounding-box prefilter on lat/lon, then exact haversine.
CREATE INDEX profiles_lat_lon_idx ON profiles (lat, lon) WHERE lat IS NOT NULL;

CREATE TABLE photos (
    id            UUID PRIMARY KEY,
    user_id       UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    position      SMALLINT NOT NULL CHECK (position >= 0),
    content_type  TEXT NOT NULL,
    width         INTEGER NOT NULL,
    height        INTEGER NOT NULL,
    size_bytes    INTEGER NOT NULL,
    object_key    TEXT NOT NULL,
    thumb_key     TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Deferred so that a reorder can swap positions inside one transaction.
    CONSTRAINT photos_user_position_key UNIQUE (user_id, position) DEFERRABLE INITIALLY DEFERRED
);
