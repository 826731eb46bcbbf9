-- lor SQL, installed by migration 0006. The redshift functions of sql/0004_fast_pz.sql with
-- clear errors for corrupt params arrays, replaced in place (same signatures, same values for
-- valid arrays). Edit by adding a new file and a new migration, never in place.
--
-- What 0004 did with a corrupt array, and what these do:
-- - a zero redshift scale (sigma) raised PostgreSQL's bare 'division by zero', and a NaN or
--   infinite one was silently a zero contribution (NaN sorts above every number in
--   PostgreSQL, so the tail function returned 0): both now raise 'pz: component k has
--   redshift scale ...'. The test is one comparison per component, where the scale is read
--   anyway: NOT (sd > 0 AND sd < 'Infinity') is true for 0, NaN and infinity.
-- - a 2-D array (params[1] of a 2-D array is NULL) raised 'got <NULL> and <NULL>': the
--   header check now names the dimensions first. It runs only on the error path, which
--   valid arrays never enter.

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
    IF array_ndims(params) IS DISTINCT FROM 1 THEN
      RAISE EXCEPTION 'pz: params must be a one-dimensional real[] (a stored posterior), not % dimensions',
        coalesce(array_ndims(params), 0);
    END IF;
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
    IF NOT (sd > 0 AND sd < 'Infinity') THEN
      RAISE EXCEPTION 'pz: component % has redshift scale %; it must be positive and finite', i - 4, params[s];
    END IF;
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
  sd double precision;
  m integer;
  s integer;
  acc double precision := 0;
BEGIN
  IF k IS NULL OR d IS NULL OR k < 1 OR d < 1
     OR cardinality(params) <> 4 + k * (1 + d + d * (d + 1) / 2) THEN
    IF array_ndims(params) IS DISTINCT FROM 1 THEN
      RAISE EXCEPTION 'pz: params must be a one-dimensional real[] (a stored posterior), not % dimensions',
        coalesce(array_ndims(params), 0);
    END IF;
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
    sd := abs(params[s]);
    IF NOT (sd > 0 AND sd < 'Infinity') THEN
      RAISE EXCEPTION 'pz: component % has redshift scale %; it must be positive and finite', i - 4, params[s];
    END IF;
    t := (u - params[m]) / sd;
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
  sd double precision;
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
    IF array_ndims(params) IS DISTINCT FROM 1 THEN
      RAISE EXCEPTION 'pz: params must be a one-dimensional real[] (a stored posterior), not % dimensions',
        coalesce(array_ndims(params), 0);
    END IF;
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
    sd := abs(params[s]);
    IF NOT (sd > 0 AND sd < 'Infinity') THEN
      RAISE EXCEPTION 'pz: component % has redshift scale %; it must be positive and finite', i - 4, params[s];
    END IF;
    t1 := (u1 - params[m]) / sd;  -- NULL below the box: cdf1 stays NULL
    t2 := (u2 - params[m]) / sd;  -- NULL above the box: cdf2 stays NULL
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
    IF array_ndims(params) IS DISTINCT FROM 1 THEN
      RAISE EXCEPTION 'pz: params must be a one-dimensional real[] (a stored posterior), not % dimensions',
        coalesce(array_ndims(params), 0);
    END IF;
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
    IF NOT (sd[i] > 0 AND sd[i] < 'Infinity') THEN
      RAISE EXCEPTION 'pz: component % has redshift scale %; it must be positive and finite', i, params[4 + k + k * d + (i - 1) * n_tril + 1];
    END IF;
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

