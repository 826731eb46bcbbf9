-- lor SQL, installed by migration 0004. Faster redshift functions and a parallel, tighter
-- lor.run_posteriors_z_between: the same signatures and the same results as
-- sql/0002_posteriors.sql and sql/0003_posterior_views.sql (the redshift functions bit for
-- bit). Edit by adding a new file and a new migration, never in place.
--
-- The 0002 functions nest calls (pz_prob -> 2 x pz_cdf -> pz_marginal + pz_mixture_cdf ->
-- K x norm_cdf), build arrays with || and run an SPI query (max over generate_series) per
-- call; that overhead, not the arithmetic, set their cost (~35 us per pz_prob at K = 4).
-- Here each of pz_pdf, pz_cdf, pz_prob and pz_quantile is one PL/pgSQL function that reads
-- the params array in place (layout: see sql/0002_posteriors.sql) with loops over K and
-- no SPI query, and the normal CDF is a LANGUAGE sql expression that the planner inlines
-- into each PL/pgSQL expression, so it costs no function call (~6 us per pz_prob).
--
-- Every value is computed with the floating-point operations of 0002 in the same order
-- (softmax weights normalised before use, per-point CDFs summed over k in order, the same
-- clamps and box tests), so the results equal the 0002 functions exactly; only the calls
-- around the arithmetic are gone.
--
-- Queries over one run (second half of this file): in 0003 the superseded-version test of
-- lor.run_posteriors was a correlated NOT EXISTS. PostgreSQL 15 keeps such a subplan out of
-- parallel workers, and costs it for every row (an index probe into each of the 16
-- partitions) although it runs only for superseded versions: a query over a 1e6-row tract
-- was planned at millions of cost units, which also switched on JIT inlining and
-- optimisation (about 1 s of compilation per query). The same test now sits in a helper
-- function, which the planner costs as one cheap call and may run in parallel workers.

-- Upper tail 1 - Phi(a) = Phi(-a) of the standard normal for a >= 0: Hart's (1968) rational
-- approximation as given by West (2005), the formula of 0002's lor.norm_cdf (abs. error
-- < 1e-15). LANGUAGE sql with one expression, not STRICT: the planner inlines it where it is
-- called, which is the point (a STRICT or PL/pgSQL function would be called per use).
CREATE OR REPLACE FUNCTION lor.norm_tail(a double precision)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE
    WHEN a > 37 THEN 0
    WHEN a < 7.07106781186547 THEN exp(-0.5 * a * a)
      * ((((((0.0352624965998911 * a + 0.700383064443688) * a + 6.37396220353165) * a
          + 33.912866078383) * a + 112.079291497871) * a + 221.213596169931) * a
          + 220.206867912376)
      / (((((((0.0883883476483184 * a + 1.75566716318264) * a + 16.064177579207) * a
          + 86.7807322029461) * a + 296.564248779674) * a + 637.333633378831) * a
          + 793.826512519948) * a + 440.413735824752)
    ELSE exp(-0.5 * a * a)
      / (a + 1 / (a + 2 / (a + 3 / (a + 4 / (a + 0.65))))) / 2.506628274631
  END
$$;
COMMENT ON FUNCTION lor.norm_tail(double precision) IS
  'Standard normal upper tail 1 - Phi(a) for a >= 0 (Hart 1968 / West 2005, abs. error < 1e-15); inlined by the planner.';

-- Standard normal CDF, now an inlinable SQL expression over lor.norm_tail (same values as the
-- 0002 PL/pgSQL version; NULL in, NULL out as before).
CREATE OR REPLACE FUNCTION lor.norm_cdf(x double precision)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE WHEN x > 0 THEN 1 - lor.norm_tail(abs(x)) ELSE lor.norm_tail(abs(x)) END
$$;
COMMENT ON FUNCTION lor.norm_cdf(double precision) IS
  'Standard normal CDF Phi(x) (Hart 1968 / West 2005 rational approximation, abs. error < 1e-15); inlined by the planner.';

-- In the functions below, for a params array with header (K, D): the logits are
-- params[5 .. 4 + K], means[k, 0] is params[5 + K + (k - 1) D] and L_k[0, 0] is
-- params[5 + K + K D + (k - 1) D (D + 1) / 2]. The loops step the positions m and s through
-- the means and factors. Malformed arrays raise the errors of 0002.

-- Redshift probability density of a stored posterior (per unit z); 0 outside the box.
CREATE OR REPLACE FUNCTION lor.pz_pdf(params real[], z double precision)
RETURNS double precision
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
  k integer := params[1];
  d integer := params[2];
  n_tril integer;
  z_lo double precision;
  z_hi double precision;
  u double precision;
  top double precision;
  total double precision := 0;
  t double precision;
  sd double precision;
  m integer;
  s integer;
  acc double precision := 0;
BEGIN
  IF k IS NULL OR d IS NULL OR k < 1 OR d < 1
     OR cardinality(params) <> 4 + k * (1 + d + d * (d + 1) / 2) THEN
    IF k IS NULL OR d IS NULL OR k < 1 OR d < 1 THEN
      RAISE EXCEPTION 'pz: params header must start with K >= 1, D >= 1; got % and %',
        params[1], params[2];
    END IF;
    RAISE EXCEPTION 'pz: params has % floats, header (K=%, D=%) needs %',
      cardinality(params), k, d, 4 + k * (1 + d + d * (d + 1) / 2);
  END IF;
  z_lo := params[3];
  z_hi := params[4];
  IF z <= z_lo OR z >= z_hi THEN
    RETURN 0;
  END IF;
  u := ln(z - z_lo) - ln(z_hi - z);
  n_tril := d * (d + 1) / 2;
  top := params[5];
  FOR i IN 6 .. 4 + k LOOP
    top := greatest(top, params[i]);
  END LOOP;
  FOR i IN 5 .. 4 + k LOOP
    total := total + exp(params[i] - top);
  END LOOP;
  m := 5 + k;
  s := 5 + k + k * d;
  FOR i IN 5 .. 4 + k LOOP
    sd := abs(params[s]);
    t := (u - params[m]) / sd;
    IF t * t < 1400 THEN  -- exp() raises on underflow; beyond this the term is < 1e-300
      acc := acc + exp(params[i] - top) / total * exp(-0.5 * t * t) / sd;
    END IF;
    m := m + d;
    s := s + n_tril;
  END LOOP;
  RETURN acc / sqrt(2 * pi()) * (z_hi - z_lo) / ((z - z_lo) * (z_hi - z));
END
$$;
COMMENT ON FUNCTION lor.pz_pdf(real[], double precision) IS
  'Redshift posterior density p(z) of a gmm_flow params array (per unit z; 0 outside the box).';

-- P(redshift <= z) of a stored posterior.
CREATE OR REPLACE FUNCTION lor.pz_cdf(params real[], z double precision)
RETURNS double precision
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
  k integer := params[1];
  d integer := params[2];
  n_tril integer;
  z_lo double precision;
  z_hi double precision;
  u double precision;
  top double precision;
  total double precision := 0;
  t double precision;
  a double precision;
  m integer;
  s integer;
  acc double precision := 0;
BEGIN
  IF k IS NULL OR d IS NULL OR k < 1 OR d < 1
     OR cardinality(params) <> 4 + k * (1 + d + d * (d + 1) / 2) THEN
    IF k IS NULL OR d IS NULL OR k < 1 OR d < 1 THEN
      RAISE EXCEPTION 'pz: params header must start with K >= 1, D >= 1; got % and %',
        params[1], params[2];
    END IF;
    RAISE EXCEPTION 'pz: params has % floats, header (K=%, D=%) needs %',
      cardinality(params), k, d, 4 + k * (1 + d + d * (d + 1) / 2);
  END IF;
  z_lo := params[3];
  z_hi := params[4];
  IF z <= z_lo THEN
    RETURN 0;
  ELSIF z >= z_hi THEN
    RETURN 1;
  END IF;
  u := ln(z - z_lo) - ln(z_hi - z);
  n_tril := d * (d + 1) / 2;
  top := params[5];
  FOR i IN 6 .. 4 + k LOOP
    top := greatest(top, params[i]);
  END LOOP;
  FOR i IN 5 .. 4 + k LOOP
    total := total + exp(params[i] - top);
  END LOOP;
  m := 5 + k;
  s := 5 + k + k * d;
  FOR i IN 5 .. 4 + k LOOP
    t := (u - params[m]) / abs(params[s]);
    a := abs(t);
    acc := acc + exp(params[i] - top) / total
      * CASE WHEN t > 0 THEN 1 - lor.norm_tail(a) ELSE lor.norm_tail(a) END;
    m := m + d;
    s := s + n_tril;
  END LOOP;
  RETURN acc;
END
$$;
COMMENT ON FUNCTION lor.pz_cdf(real[], double precision) IS
  'Redshift posterior CDF P(z_true <= z) of a gmm_flow params array.';

-- P(z1 < redshift < z2) of a stored posterior; 0 when z2 <= z1. Both CDFs in one pass over
-- the components; a point outside the box keeps its CDF at exactly 0 or 1 (u1 or u2 NULL).
CREATE OR REPLACE FUNCTION lor.pz_prob(params real[], z1 double precision, z2 double precision)
RETURNS double precision
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
  k integer;
  d integer;
  n_tril integer;
  z_lo double precision;
  z_hi double precision;
  u1 double precision;
  u2 double precision;
  top double precision;
  total double precision := 0;
  w double precision;
  t1 double precision;
  t2 double precision;
  a1 double precision;
  a2 double precision;
  m integer;
  s integer;
  cdf1 double precision := 0;
  cdf2 double precision := 0;
BEGIN
  IF z2 <= z1 THEN
    RETURN 0;
  END IF;
  k := params[1];
  d := params[2];
  IF k IS NULL OR d IS NULL OR k < 1 OR d < 1
     OR cardinality(params) <> 4 + k * (1 + d + d * (d + 1) / 2) THEN
    IF k IS NULL OR d IS NULL OR k < 1 OR d < 1 THEN
      RAISE EXCEPTION 'pz: params header must start with K >= 1, D >= 1; got % and %',
        params[1], params[2];
    END IF;
    RAISE EXCEPTION 'pz: params has % floats, header (K=%, D=%) needs %',
      cardinality(params), k, d, 4 + k * (1 + d + d * (d + 1) / 2);
  END IF;
  z_lo := params[3];
  z_hi := params[4];
  IF z2 <= z_lo OR z1 >= z_hi THEN
    RETURN 0;  -- both CDFs 0, or both 1
  END IF;
  IF z1 > z_lo THEN
    u1 := ln(z1 - z_lo) - ln(z_hi - z1);
  END IF;
  IF z2 < z_hi THEN
    u2 := ln(z2 - z_lo) - ln(z_hi - z2);
  END IF;
  n_tril := d * (d + 1) / 2;
  top := params[5];
  FOR i IN 6 .. 4 + k LOOP
    top := greatest(top, params[i]);
  END LOOP;
  FOR i IN 5 .. 4 + k LOOP
    total := total + exp(params[i] - top);
  END LOOP;
  m := 5 + k;
  s := 5 + k + k * d;
  FOR i IN 5 .. 4 + k LOOP
    w := exp(params[i] - top) / total;
    t1 := (u1 - params[m]) / abs(params[s]);  -- NULL below the box: cdf1 stays NULL
    t2 := (u2 - params[m]) / abs(params[s]);  -- NULL above the box: cdf2 stays NULL
    a1 := abs(t1);
    a2 := abs(t2);
    cdf1 := cdf1 + w * CASE WHEN t1 > 0 THEN 1 - lor.norm_tail(a1) ELSE lor.norm_tail(a1) END;
    cdf2 := cdf2 + w * CASE WHEN t2 > 0 THEN 1 - lor.norm_tail(a2) ELSE lor.norm_tail(a2) END;
    m := m + d;
    s := s + n_tril;
  END LOOP;
  RETURN least(1, greatest(0, coalesce(cdf2, 1) - coalesce(cdf1, 0)));
END
$$;
COMMENT ON FUNCTION lor.pz_prob(real[], double precision, double precision) IS
  'Posterior probability that z1 < redshift < z2 for a gmm_flow params array (0 if z2 <= z1).';

-- Redshift quantile of a stored posterior by bisection on the CDF over the box: 40 halvings
-- of the box width (< 1e-11 of it). q = 0 gives z_lo, q = 1 gives z_hi, other q outside
-- [0, 1] give NULL. The marginal (weights, means, stds) is read once into local arrays.
CREATE OR REPLACE FUNCTION lor.pz_quantile(params real[], q double precision)
RETURNS double precision
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
  k integer := params[1];
  d integer := params[2];
  n_tril integer;
  z_lo double precision;
  z_hi double precision;
  top double precision;
  total double precision := 0;
  w double precision[];
  mu double precision[];
  sd double precision[];
  a double precision;
  b double precision;
  mid double precision;
  u double precision;
  t double precision;
  at double precision;
  acc double precision;
BEGIN
  IF k IS NULL OR d IS NULL OR k < 1 OR d < 1
     OR cardinality(params) <> 4 + k * (1 + d + d * (d + 1) / 2) THEN
    IF k IS NULL OR d IS NULL OR k < 1 OR d < 1 THEN
      RAISE EXCEPTION 'pz: params header must start with K >= 1, D >= 1; got % and %',
        params[1], params[2];
    END IF;
    RAISE EXCEPTION 'pz: params has % floats, header (K=%, D=%) needs %',
      cardinality(params), k, d, 4 + k * (1 + d + d * (d + 1) / 2);
  END IF;
  z_lo := params[3];
  z_hi := params[4];
  IF q < 0 OR q > 1 THEN
    RETURN NULL;
  ELSIF q = 0 THEN
    RETURN z_lo;
  ELSIF q = 1 THEN
    RETURN z_hi;
  END IF;
  n_tril := d * (d + 1) / 2;
  top := params[5];
  FOR i IN 6 .. 4 + k LOOP
    top := greatest(top, params[i]);
  END LOOP;
  FOR i IN 1 .. k LOOP
    total := total + exp(params[4 + i] - top);
  END LOOP;
  FOR i IN 1 .. k LOOP
    w[i] := exp(params[4 + i] - top) / total;
    mu[i] := params[4 + k + (i - 1) * d + 1];
    sd[i] := abs(params[4 + k + k * d + (i - 1) * n_tril + 1]);
  END LOOP;
  a := z_lo;
  b := z_hi;
  FOR j IN 1 .. 40 LOOP
    mid := 0.5 * (a + b);
    u := ln(mid - z_lo) - ln(z_hi - mid);
    acc := 0;
    FOR i IN 1 .. k LOOP
      t := (u - mu[i]) / sd[i];
      at := abs(t);
      acc := acc + w[i] * CASE WHEN t > 0 THEN 1 - lor.norm_tail(at) ELSE lor.norm_tail(at) END;
    END LOOP;
    IF acc < q THEN
      a := mid;
    ELSE
      b := mid;
    END IF;
  END LOOP;
  RETURN 0.5 * (a + b);
END
$$;
COMMENT ON FUNCTION lor.pz_quantile(real[], double precision) IS
  'Redshift posterior quantile of a gmm_flow params array (bisection to < 1e-11 of the box width).';

GRANT EXECUTE ON FUNCTION
  lor.norm_tail(double precision),
  lor.norm_cdf(double precision),
  lor.pz_pdf(real[], double precision),
  lor.pz_cdf(real[], double precision),
  lor.pz_prob(real[], double precision, double precision),
  lor.pz_quantile(real[], double precision)
TO lor_reader, lor_worker;

-- Whether run p_run holds a posterior for a newer version (one from a later release) of the
-- catalog object p_catalog_id than the version introduced by release p_release_id. The NOT
-- EXISTS test of 0003's lor.run_posteriors, as a function so the planner does not cost a
-- partition-wide subplan for every row (see the header). It has a sublink, so it is never
-- inlined; lor.run_posteriors calls it only for superseded object versions (rare).
CREATE OR REPLACE FUNCTION lor.run_has_newer_posterior(
  p_run integer, p_catalog_id bigint, p_release_id integer
)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT EXISTS (
    SELECT 1
    FROM lor.objects n
    JOIN lor.releases n_rel ON n_rel.id = n.release_id
    JOIN lor.releases o_rel ON o_rel.id = p_release_id
    JOIN lor.posteriors np
      ON np.tract_id = n.tract_id AND np.run_id = p_run AND np.object_id = n.object_id
    WHERE n.catalog_id = p_catalog_id AND n_rel.sequence > o_rel.sequence)
$$;
COMMENT ON FUNCTION lor.run_has_newer_posterior(integer, bigint, integer) IS
  'Whether run p_run has a posterior for a version of catalog object p_catalog_id newer than '
  'the one from release p_release_id (helper of lor.run_posteriors).';

-- The latest posterior of every object of one run: 0003's definition with the
-- superseded-version test through lor.run_has_newer_posterior (same rows). Still LANGUAGE
-- sql, STABLE and not STRICT, so the planner inlines it and filters reach the indexes.
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
         OR NOT lor.run_has_newer_posterior(p.run_id, o.catalog_id, o.release_id))
$$;
COMMENT ON FUNCTION lor.run_posteriors(integer) IS
  'Latest posterior of every object of run p_run (newest object version, then newest row), '
  'with catalog_id, ra, dec and tract_id of the object; inlined, so filters use the indexes.';

-- Objects of one run and tract whose P(z1 < z < z2) exceeds p_min, with that probability.
-- Stored-quantile prefilter, lossless: P(z1 < z < z2) > p implies F(z1) < 1 - p and
-- F(z2) > p, so for each stored level a <= p, z2 > Q(a), and for each a >= 1 - p,
-- z1 < Q(a). The stored levels 0.025, 0.16, 0.5, 0.84 and 0.975 give the tiers below:
-- p_min >= 0.5 adds z1 < z_q50 < z2, which the (run_id, tract_id, z_q50) index serves;
-- p_min >= 0.84 needs z_q16 > z1 and z_q84 < z2, p_min >= 0.975 (new in 0004) z_q025 > z1
-- and z_q975 < z2; below 0.5, z_q16 < z2 and z_q84 > z1 (p_min >= 0.16), or the same with
-- z_q025 and z_q975 (p_min >= 0.025), still drop rows far from the interval. With a
-- constant p_min the CASE folds to its one tier when the query is planned. The
-- quantiles are stored as float32 (half a unit in the last place is < 2.5e-7 for z < 4),
-- so each bound is widened by 1e-6: no row that the exact cut keeps is dropped.
-- pz_prob is a plain WHERE condition and output column (evaluated again for the rows that
-- pass) rather than 0003's LATERAL (... OFFSET 0) subquery: PostgreSQL 15 runs no LATERAL
-- subquery in parallel workers, while this form evaluates pz_prob inside the parallel scan.
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
    AND lor.pz_prob(r.params, z1, z2) > p_min
$$;
COMMENT ON FUNCTION lor.run_posteriors_z_between(integer, integer, double precision, double precision, double precision) IS
  'Objects of run p_run in tract p_tract with P(z1 < z < z2) > p_min and that probability '
  '(p_z); quantile columns prefilter through the (run_id, tract_id, z_q50) index.';

GRANT EXECUTE ON FUNCTION
  lor.run_has_newer_posterior(integer, bigint, integer),
  lor.run_posteriors(integer),
  lor.run_posteriors_z_between(integer, integer, double precision, double precision, double precision)
TO lor_reader, lor_worker;
