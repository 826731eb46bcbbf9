-- lor SQL, installed by migration 0009. The redshift functions check the representation of
-- the posterior they read. Edit by adding a new file and a new migration, never in place.
--
-- The real[] forms (0004, 0006) read one layout, gmm_flow version 1: a header (K, D, z_lo,
-- z_hi), K logits, K means of D values, K packed Cholesky factors. A params array does not
-- say which representation wrote it, so they cannot tell another representation's array
-- from a gmm_flow one. The forms below take the posterior row itself (a lor.posteriors row,
-- a lor.run_posteriors(run) row, or any row with representation_name,
-- representation_version and params), check its representation, then read its params:
--   lor.pz_prob(p, 0.8, 1.0)   instead of   lor.pz_prob(p.params, 0.8, 1.0)
-- A row of a representation they do not read raises 'pz: posterior representation ...'.
-- A row without params (no posterior) gives NULL, as the STRICT real[] forms do.

-- The one list of representations the SQL redshift functions read.
CREATE OR REPLACE FUNCTION lor.pz_representation_check(name text, version text)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE COST 1
AS $$
BEGIN
  IF name = 'gmm_flow' AND version = '1' THEN
    RETURN true;
  END IF;
  RAISE EXCEPTION 'pz: posterior representation % version % is not one the SQL redshift functions read (they read gmm_flow version 1); evaluate it in Python (lor export)',
    coalesce(quote_literal(name), 'NULL'), coalesce(quote_literal(version), 'NULL')
    USING ERRCODE = 'feature_not_supported';
END
$$;
COMMENT ON FUNCTION lor.pz_representation_check(text, text) IS
  'True for a posterior representation the pz_* functions read (gmm_flow v1); raises for any other.';

CREATE OR REPLACE FUNCTION lor.pz_pdf(p record, z double precision)
RETURNS double precision
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
BEGIN
  IF p.params IS NULL THEN
    RETURN NULL;
  END IF;
  PERFORM lor.pz_representation_check(p.representation_name, p.representation_version);
  RETURN lor.pz_pdf(p.params, z);
END
$$;
COMMENT ON FUNCTION lor.pz_pdf(record, double precision) IS
  'Redshift posterior density p(z) of a posterior row, after checking its representation.';

CREATE OR REPLACE FUNCTION lor.pz_cdf(p record, z double precision)
RETURNS double precision
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
BEGIN
  IF p.params IS NULL THEN
    RETURN NULL;
  END IF;
  PERFORM lor.pz_representation_check(p.representation_name, p.representation_version);
  RETURN lor.pz_cdf(p.params, z);
END
$$;
COMMENT ON FUNCTION lor.pz_cdf(record, double precision) IS
  'P(redshift <= z) of a posterior row, after checking its representation.';

CREATE OR REPLACE FUNCTION lor.pz_prob(p record, z1 double precision, z2 double precision)
RETURNS double precision
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
BEGIN
  IF p.params IS NULL THEN
    RETURN NULL;
  END IF;
  PERFORM lor.pz_representation_check(p.representation_name, p.representation_version);
  RETURN lor.pz_prob(p.params, z1, z2);
END
$$;
COMMENT ON FUNCTION lor.pz_prob(record, double precision, double precision) IS
  'P(z1 < redshift < z2) of a posterior row, after checking its representation.';

CREATE OR REPLACE FUNCTION lor.pz_quantile(p record, q double precision)
RETURNS double precision
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
BEGIN
  IF p.params IS NULL THEN
    RETURN NULL;
  END IF;
  PERFORM lor.pz_representation_check(p.representation_name, p.representation_version);
  RETURN lor.pz_quantile(p.params, q);
END
$$;
COMMENT ON FUNCTION lor.pz_quantile(record, double precision) IS
  'Redshift posterior quantile of a posterior row, after checking its representation.';

CREATE OR REPLACE FUNCTION lor.pz_bin_probs(p record, edges double precision[])
RETURNS double precision[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
BEGIN
  IF p.params IS NULL THEN
    RETURN NULL;
  END IF;
  PERFORM lor.pz_representation_check(p.representation_name, p.representation_version);
  RETURN lor.pz_bin_probs(p.params, edges);
END
$$;
COMMENT ON FUNCTION lor.pz_bin_probs(record, double precision[]) IS
  'Probability of each tomographic bin of a posterior row, after checking its representation.';

CREATE OR REPLACE FUNCTION lor.pz_bin(p record, edges double precision[], p_min double precision DEFAULT 0)
RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
BEGIN
  IF p.params IS NULL THEN
    RETURN NULL;
  END IF;
  PERFORM lor.pz_representation_check(p.representation_name, p.representation_version);
  RETURN lor.pz_bin(p.params, edges, p_min);
END
$$;
COMMENT ON FUNCTION lor.pz_bin(record, double precision[], double precision) IS
  'Most probable tomographic bin of a posterior row (NULL below p_min), after checking its representation.';

-- 0004's definition with the representation checked before pz_prob reads params (the check
-- costs 1, pz_prob 100, so the planner evaluates it first; it runs only on rows the
-- quantile prefilter keeps).
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
  SELECT r.posterior_id, r.catalog_id, r.ra, r.dec, r.z_q50, r.ood_flags,
         lor.pz_prob(r.params, z1, z2)
  FROM lor.run_posteriors(p_run) r
  WHERE r.tract_id = p_tract
    AND (p_min < 0.5 OR r.z_q50 BETWEEN z1 - 1e-6 AND z2 + 1e-6)
    AND CASE  -- the strongest tier only: the weaker ones follow from it (quantiles are ordered)
          WHEN p_min >= 0.975 THEN r.z_q025 > z1 - 1e-6 AND r.z_q975 < z2 + 1e-6
          WHEN p_min >= 0.84 THEN r.z_q16 > z1 - 1e-6 AND r.z_q84 < z2 + 1e-6
          WHEN p_min >= 0.5 THEN true
          WHEN p_min >= 0.16 THEN r.z_q16 < z2 + 1e-6 AND r.z_q84 > z1 - 1e-6
          WHEN p_min >= 0.025 THEN r.z_q025 < z2 + 1e-6 AND r.z_q975 > z1 - 1e-6
          ELSE true
        END
    AND lor.pz_representation_check(r.representation_name, r.representation_version)
    AND lor.pz_prob(r.params, z1, z2) > p_min
$$;
COMMENT ON FUNCTION lor.run_posteriors_z_between(integer, integer, double precision, double precision, double precision) IS
  'Objects of run p_run in tract p_tract with P(z1 < z < z2) > p_min and that probability '
  '(p_z); quantile columns prefilter through the (run_id, tract_id, z_q50) index; rows of a '
  'representation the SQL functions do not read raise.';

COMMENT ON COLUMN lor.model_versions.artifact_uri IS
  'Content address sha256:<hex> of the artifact in the model store (LOR_MODEL_STORE); rows '
  'registered before 0009 may hold the absolute path they were registered from.';

GRANT EXECUTE ON FUNCTION
  lor.pz_representation_check(text, text),
  lor.pz_pdf(record, double precision),
  lor.pz_cdf(record, double precision),
  lor.pz_prob(record, double precision, double precision),
  lor.pz_quantile(record, double precision),
  lor.pz_bin_probs(record, double precision[]),
  lor.pz_bin(record, double precision[], double precision)
TO lor_reader, lor_worker;
