-- lor SQL, installed by migration 0003. Posteriors joined with their objects: the latest row
-- per object of one run (a function) and over all runs (a view). Edit by adding a new file
-- and a new migration, never in place.
--
-- An object is a catalog object (catalog_id), which may have several versions (lor.objects
-- rows) when a later release changed its measurements; a run extended to that release holds
-- a posterior for each version it processed. "Latest" is the posterior of the newest object
-- version (by the release that introduced it), then the newest row (created_at).
--
-- Probability cuts such as lor.pz_prob(params, z1, z2) > p evaluate a PL/pgSQL function per
-- row. For p >= 0.84, P(z1 < z < z2) > p implies z1 < z_q16 and z_q84 < z2 (and, for p >= 0.5,
-- z1 < z_q50 < z2), so adding "z_q50 BETWEEN z1 AND z2 AND z_q16 > z1 AND z_q84 < z2" to the
-- query gives the same answer while an index on z_q50 (ix_posteriors_run_id_tract_id_z_q50,
-- migration 0003) hands pz_prob only the candidates; lor.run_posteriors_z_between does that
-- for you. It relies on the stored z quantiles, which every gmm_flow row carries.

-- The latest posterior of every object of one run, with the object's catalog id, position
-- and tract. LANGUAGE sql, STABLE and not STRICT, so the planner inlines it: a caller's
-- WHERE tract_id = ... or z_q50 BETWEEN ... reaches the indexes of lor.posteriors. The
-- NOT EXISTS branch runs only for superseded object versions (rare): it keeps such a row only
-- while the run has no posterior for a newer version of the same catalog object.
CREATE OR REPLACE FUNCTION lor.run_posteriors(p_run integer)
RETURNS TABLE (
  posterior_id uuid,
  run_id integer,
  tract_id integer,
  object_id uuid,
  catalog_id bigint,
  ra double precision,
  "dec" double precision,
  representation_name text,
  representation_version text,
  params real[],
  z_mean real, z_mode real, z_std real, z_q025 real, z_q16 real, z_q50 real, z_q84 real,
  z_q975 real,
  log_mstar_mean real, log_mstar_mode real, log_mstar_std real, log_mstar_q025 real,
  log_mstar_q16 real, log_mstar_q50 real, log_mstar_q84 real, log_mstar_q975 real,
  log_sfr_mean real, log_sfr_mode real, log_sfr_std real, log_sfr_q025 real,
  log_sfr_q16 real, log_sfr_q50 real, log_sfr_q84 real, log_sfr_q975 real,
  ood_flags integer,
  method text,
  parent_posterior_id uuid,
  input_hash uuid,
  worker_host text,
  created_at timestamptz
)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT p.posterior_id, p.run_id, p.tract_id, p.object_id, o.catalog_id, o.ra, o.dec,
         p.representation_name, p.representation_version, p.params,
         p.z_mean, p.z_mode, p.z_std, p.z_q025, p.z_q16, p.z_q50, p.z_q84, p.z_q975,
         p.log_mstar_mean, p.log_mstar_mode, p.log_mstar_std, p.log_mstar_q025,
         p.log_mstar_q16, p.log_mstar_q50, p.log_mstar_q84, p.log_mstar_q975,
         p.log_sfr_mean, p.log_sfr_mode, p.log_sfr_std, p.log_sfr_q025,
         p.log_sfr_q16, p.log_sfr_q50, p.log_sfr_q84, p.log_sfr_q975,
         p.ood_flags, p.method, p.parent_posterior_id, p.input_hash, p.worker_host,
         p.created_at
  FROM lor.posteriors p
  JOIN lor.objects o ON o.tract_id = p.tract_id AND o.object_id = p.object_id
  WHERE p.run_id = p_run
    AND (o.superseded_release_id IS NULL
         OR NOT EXISTS (
           SELECT 1
           FROM lor.objects n
           JOIN lor.releases n_rel ON n_rel.id = n.release_id
           JOIN lor.releases o_rel ON o_rel.id = o.release_id
           JOIN lor.posteriors np
             ON np.tract_id = n.tract_id AND np.run_id = p.run_id AND np.object_id = n.object_id
           WHERE n.catalog_id = o.catalog_id AND n_rel.sequence > o_rel.sequence))
$$;
COMMENT ON FUNCTION lor.run_posteriors(integer) IS
  'Latest posterior of every object of run p_run (newest object version, then newest row), '
  'with catalog_id, ra, dec and tract_id of the object; inlined, so filters use the indexes.';

-- Objects of one run and tract whose P(z1 < z < z2) exceeds p_min, with that probability.
-- The quantile prefilter (see the header) applies in full for p_min >= 0.84; below that only
-- the median test (p_min >= 0.5) or none, and then more rows are evaluated. The quantiles
-- are stored as float32 (half a unit in the last place is < 2.5e-7 for z < 4), so the
-- prefilter is widened by 1e-6: it never drops a row that the exact cut keeps. A loose cut
-- (p_min < 0.5, or many objects near the interval) still evaluates pz_prob on many rows;
-- on PostgreSQL 15 the superseded-version subplan of lor.run_posteriors keeps that serial.
CREATE OR REPLACE FUNCTION lor.run_posteriors_z_between(
  p_run integer, p_tract integer, z1 double precision, z2 double precision,
  p_min double precision
)
RETURNS TABLE (
  posterior_id uuid,
  catalog_id bigint,
  ra double precision,
  "dec" double precision,
  z_q50 real,
  ood_flags integer,
  p_z double precision
)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT r.posterior_id, r.catalog_id, r.ra, r.dec, r.z_q50, r.ood_flags, pz.p_z
  FROM lor.run_posteriors(p_run) r
  -- OFFSET 0 keeps this a subquery: pz_prob runs once per candidate (not again for the
  -- output column), inside the parallel scan of lor.posteriors when the planner uses one.
  CROSS JOIN LATERAL (SELECT lor.pz_prob(r.params, z1, z2) AS p_z OFFSET 0) pz
  WHERE r.tract_id = p_tract
    AND (p_min < 0.5 OR r.z_q50 BETWEEN z1 - 1e-6 AND z2 + 1e-6)
    AND (p_min < 0.84 OR (r.z_q16 > z1 - 1e-6 AND r.z_q84 < z2 + 1e-6))
    AND pz.p_z > p_min
$$;
COMMENT ON FUNCTION lor.run_posteriors_z_between(integer, integer, double precision, double precision, double precision) IS
  'Objects of run p_run in tract p_tract with P(z1 < z < z2) > p_min and that probability '
  '(p_z); quantile columns prefilter through the (run_id, tract_id, z_q50) index.';

-- The latest posterior of every object over all runs. DISTINCT ON (tract_id, catalog_id):
-- a filter on tract_id or catalog_id is applied before the de-duplication (and, under
-- Citus, each tract's shard de-duplicates its own rows). Rows with no posterior (NULL params,
-- method 'none') count as rows: nothing is silently dropped.
CREATE OR REPLACE VIEW lor.latest_posteriors AS
  SELECT DISTINCT ON (p.tract_id, o.catalog_id)
         p.posterior_id, p.run_id, p.tract_id, p.object_id, o.catalog_id, o.ra, o.dec,
         p.representation_name, p.representation_version, p.params,
         p.z_mean, p.z_mode, p.z_std, p.z_q025, p.z_q16, p.z_q50, p.z_q84, p.z_q975,
         p.log_mstar_mean, p.log_mstar_mode, p.log_mstar_std, p.log_mstar_q025,
         p.log_mstar_q16, p.log_mstar_q50, p.log_mstar_q84, p.log_mstar_q975,
         p.log_sfr_mean, p.log_sfr_mode, p.log_sfr_std, p.log_sfr_q025,
         p.log_sfr_q16, p.log_sfr_q50, p.log_sfr_q84, p.log_sfr_q975,
         p.ood_flags, p.method, p.parent_posterior_id, p.input_hash, p.worker_host,
         p.created_at
  FROM lor.posteriors p
  JOIN lor.objects o ON o.tract_id = p.tract_id AND o.object_id = p.object_id
  JOIN lor.releases rel ON rel.id = o.release_id
  ORDER BY p.tract_id, o.catalog_id, rel.sequence DESC, p.created_at DESC, p.posterior_id DESC;
COMMENT ON VIEW lor.latest_posteriors IS
  'Latest posterior of every (tract, catalog object) over all runs: newest object version, '
  'then newest row. Filter on tract_id or catalog_id to read only those objects.';

-- Every view column carries the comment of the table column it shows (\d+ in psql).
DO $$
DECLARE
  col record;
BEGIN
  FOR col IN
    SELECT a.attname,
           coalesce(col_description('lor.posteriors'::regclass, p.attnum),
                    col_description('lor.objects'::regclass, o.attnum)) AS comment
    FROM pg_attribute a
    LEFT JOIN pg_attribute p ON p.attrelid = 'lor.posteriors'::regclass AND p.attname = a.attname
    LEFT JOIN pg_attribute o ON o.attrelid = 'lor.objects'::regclass AND o.attname = a.attname
    WHERE a.attrelid = 'lor.latest_posteriors'::regclass AND a.attnum > 0
  LOOP
    EXECUTE 'COMMENT ON COLUMN lor.latest_posteriors.' || quote_ident(col.attname) || ' IS '
      || quote_nullable(col.comment);
  END LOOP;
END
$$;

GRANT SELECT ON lor.latest_posteriors TO lor_reader, lor_worker;
GRANT EXECUTE ON FUNCTION
  lor.run_posteriors(integer),
  lor.run_posteriors_z_between(integer, integer, double precision, double precision, double precision)
TO lor_reader, lor_worker;
