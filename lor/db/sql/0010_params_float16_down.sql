-- lor SQL, run by migration 0010's downgrade: lor.run_posteriors as 0004 defined it (no
-- params_rest), the unique constraint and the (tract_id, object_id) and (run_id, z_q50)
-- indexes as before 0010.
-- The downgrade joins params and params_rest back into params before it runs this.

DROP FUNCTION lor.run_posteriors(integer);
CREATE FUNCTION lor.run_posteriors(p_run integer)
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
         OR NOT lor.run_has_newer_posterior(p.run_id, o.catalog_id, o.release_id))
$$;
COMMENT ON FUNCTION lor.run_posteriors(integer) IS
  'Latest posterior of every object of run p_run (newest object version, then newest row), '
  'with catalog_id, ra, dec and tract_id of the object; inlined, so filters use the indexes.';

GRANT EXECUTE ON FUNCTION lor.run_posteriors(integer) TO lor_reader, lor_worker;

CREATE INDEX ix_posteriors_run_z_q50 ON lor.posteriors (run_id, z_q50);
CREATE INDEX ix_posteriors_tract_id_object_id ON lor.posteriors (tract_id, object_id);
COMMENT ON INDEX lor.ix_posteriors_tract_id_object_id IS
  'Every posterior of one object version, over all runs (latest_posteriors by object).';
ALTER TABLE lor.posteriors DROP CONSTRAINT uq_posteriors_tract_id_object_id_run_id;
ALTER TABLE lor.posteriors
  ADD CONSTRAINT uq_posteriors_tract_id_run_id_object_id UNIQUE (tract_id, run_id, object_id);
ALTER TABLE lor.posteriors DROP COLUMN params_rest;
COMMENT ON COLUMN lor.posteriors.params IS 'Representation parameters; NULL if no posterior.';
COMMENT ON COLUMN lor.latest_posteriors.params IS
  'Representation parameters; NULL if no posterior.';
