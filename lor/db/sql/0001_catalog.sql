-- lor SQL, installed by migration 0001. Functions and views over the catalog tables, and the
-- two database roles. Edit by adding a new file and a new migration, never in place.

-- AB magnitude of a flux in nanojansky: m = -2.5 log10(f / 3631 Jy).
CREATE OR REPLACE FUNCTION lor.njy_to_abmag(flux_njy double precision)
RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT CASE WHEN flux_njy > 0 THEN -2.5 * log(flux_njy / 3631e9) END $$;
COMMENT ON FUNCTION lor.njy_to_abmag(double precision) IS
  'AB magnitude of a flux in nJy; NULL for non-positive flux.';

-- Index of a band in a release's band set (1-based, for array subscripts), e.g. lor.band_index(1, 'i').
CREATE OR REPLACE FUNCTION lor.band_index(p_release_id integer, p_band text)
RETURNS integer
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
  SELECT array_position(b.bands, p_band)
  FROM lor.releases r JOIN lor.band_sets b ON b.id = r.band_set_id
  WHERE r.id = p_release_id
$$;
COMMENT ON FUNCTION lor.band_index(integer, text) IS
  '1-based array subscript of a band in the band set of a release (NULL if absent).';

-- The object versions current as of a release: introduced at or before it and not yet
-- superseded by a changed version at or before it.
CREATE OR REPLACE FUNCTION lor.objects_as_of(p_release text)
RETURNS SETOF lor.objects
LANGUAGE sql STABLE STRICT
AS $$
  SELECT o.*
  FROM lor.objects o
  JOIN lor.releases intro ON intro.id = o.release_id
  JOIN lor.releases target ON target.name = p_release
  LEFT JOIN lor.releases sup ON sup.id = o.superseded_release_id
  WHERE intro.sequence <= target.sequence
    AND (sup.id IS NULL OR sup.sequence > target.sequence)
$$;
COMMENT ON FUNCTION lor.objects_as_of(text) IS
  'Object versions current as of the named release (later releases store only changes).';

CREATE OR REPLACE VIEW lor.current_objects AS
  SELECT o.*, r.name AS release_name
  FROM lor.objects o JOIN lor.releases r ON r.id = o.release_id
  WHERE o.superseded_release_id IS NULL;
COMMENT ON VIEW lor.current_objects IS 'Latest version of every object.';

-- Roles: lor_reader reads everything; lor_worker also claims work and writes posteriors.
-- NOLOGIN group roles: grant them to login users (CREATE USER alice IN ROLE lor_reader).
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'lor_reader') THEN
    CREATE ROLE lor_reader NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'lor_worker') THEN
    CREATE ROLE lor_worker NOLOGIN;
  END IF;
END
$$;
GRANT USAGE ON SCHEMA lor TO lor_reader, lor_worker;
GRANT SELECT ON ALL TABLES IN SCHEMA lor TO lor_reader, lor_worker;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA lor TO lor_reader, lor_worker;
GRANT INSERT ON lor.posteriors TO lor_worker;
GRANT INSERT, UPDATE ON lor.work_items TO lor_worker;
GRANT UPDATE (status) ON lor.processing_runs TO lor_worker;
ALTER DEFAULT PRIVILEGES IN SCHEMA lor GRANT SELECT ON TABLES TO lor_reader, lor_worker;
