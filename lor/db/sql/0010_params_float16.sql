-- lor SQL, installed by migration 0010. Posterior parameters in fewer bytes: the redshift
-- marginal stays float32 in params, everything else goes to params_rest as float16. Edit by
-- adding a new file and a new migration, never in place.
--
-- A gmm_flow row of K components in D dimensions (header K, D, z_lo, z_hi; K logits; K x D
-- means; K packed Cholesky factors) keeps in params its redshift marginal, which is itself
-- a gmm_flow array with D = 1: header (K, 1, z_lo, z_hi), the K logits, the K redshift
-- means and the K factors L_k[0, 0]. These are the only entries lor.pz_* and lor.nz read,
-- and a D = 1 header puts each at the position their loops step to, so every redshift
-- function computes with the same float32 values in the same order: the same results, bit
-- for bit, through the same functions. params_rest holds every other mean and factor, in
-- the stored order, as little-endian IEEE float16 (lor/db/params_codec.py is the one codec;
-- migration 0010 converts existing rows with it). K = 4, D = 8: 184 float32 (736 bytes)
-- become 16 float32 and 168 float16 (400 bytes).
--
-- Two indexes go, each made redundant by another:
-- - the unique (tract_id, run_id, object_id) becomes (tract_id, object_id, run_id): it then
--   also serves the lookups of one object's posteriors (lor.cone, lor.latest_posteriors,
--   run_has_newer_posterior) that ix_posteriors_tract_id_object_id served, and that index
--   goes; one run's object ranges (prior chunks) still seek on (tract, object) with run_id
--   as an index condition;
-- - ix_posteriors_run_z_q50 (0001) predates 0003's (run_id, tract_id, z_q50): every query of
--   the project that filters on z_q50 names a tract (run_posteriors_z_between), and one that
--   filters on run_id alone reads the leading column of the other index just as well. A
--   run-wide z_q50 range without a tract still uses (run_id, tract_id, z_q50), with z_q50
--   checked in the index, reading the run's index entries rather than only the matches.

ALTER TABLE lor.posteriors ADD COLUMN params_rest bytea;
COMMENT ON COLUMN lor.posteriors.params IS
  'Redshift marginal of the representation parameters, float32 (a gmm_flow array with '
  'D = 1: K, 1, z_lo, z_hi, logits, redshift means, L00); what lor.pz_* and lor.nz read. '
  'NULL if no posterior.';
COMMENT ON COLUMN lor.posteriors.params_rest IS
  'The other representation parameters (means and Cholesky entries besides the redshift '
  'ones, stored order) as little-endian float16; lor.db.params_codec joins them with params. '
  'NULL if no posterior.';

-- lor.latest_posteriors, lor.cone and lor.crossmatch return params as stored: the redshift
-- marginal, which is what the redshift functions read. lor.run_posteriors adds params_rest.
COMMENT ON COLUMN lor.latest_posteriors.params IS
  'Redshift marginal of the representation parameters, float32 (a gmm_flow array with '
  'D = 1); the other parameters are in lor.posteriors.params_rest. NULL if no posterior.';

ALTER TABLE lor.posteriors DROP CONSTRAINT uq_posteriors_tract_id_run_id_object_id;
ALTER TABLE lor.posteriors
  ADD CONSTRAINT uq_posteriors_tract_id_object_id_run_id UNIQUE (tract_id, object_id, run_id);
DROP INDEX lor.ix_posteriors_tract_id_object_id;
DROP INDEX lor.ix_posteriors_run_z_q50;
COMMENT ON INDEX lor.uq_posteriors_tract_id_object_id_run_id IS
  'One posterior per object version and run; every posterior of one object version, over all '
  'runs (latest_posteriors, cone, run_has_newer_posterior).';

-- lor.run_posteriors returns params_rest too (a new output column: drop and create).
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
  params_rest bytea,
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
         p.representation_name, p.representation_version, p.params, p.params_rest,
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
  'with catalog_id, ra, dec and tract_id of the object; inlined, so filters use the indexes. '
  'params is the redshift marginal, params_rest the rest in float16 (lor.db.params_codec).';

GRANT EXECUTE ON FUNCTION lor.run_posteriors(integer) TO lor_reader, lor_worker;
