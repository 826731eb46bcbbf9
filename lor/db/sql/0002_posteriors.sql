-- lor SQL, installed by migration 0002. Redshift marginals of stored posteriors, computed
-- from lor.posteriors.params alone. Edit by adding a new file and a new migration, never in
-- place.
--
-- The gmm_flow representation (lor/posteriors/gmm_flow.py) stores per object the float32
-- array [K, D, z_lo, z_hi, logits (K), means (K x D), Cholesky factors (K x D(D+1)/2)],
-- each factor's lower triangle packed row-major, so its first entry is L[0,0]. Redshift is
-- parameter 0 and the bijector is elementwise, so in u = ln((z - z_lo) / (z_hi - z)) the
-- redshift marginal is the 1-D mixture sum_k w_k N(u | means[k, 0], L_k[0, 0]^2), with
-- w = softmax(logits). The functions read K and D from the header, so they serve any K, D.
-- They agree with GaussianMixtureFlow.z_pdf / z_cdf / z_prob / z_quantile to 1e-9.

-- Standard normal CDF. PostgreSQL before 16 has no erf/erfc, so this is Hart's (1968)
-- double-precision rational approximation as given by G. West (2005), "Better approximations
-- to cumulative normal functions", Wilmott Magazine: absolute error below 1e-15 everywhere
-- (checked against scipy.special.ndtr in tests/posteriors/test_sql_functions.py).
CREATE OR REPLACE FUNCTION lor.norm_cdf(x double precision)
RETURNS double precision
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
  ax double precision := abs(x);
  tail double precision;
BEGIN
  IF ax > 37 THEN
    tail := 0;
  ELSIF ax < 7.07106781186547 THEN
    tail := exp(-0.5 * ax * ax)
      * ((((((0.0352624965998911 * ax + 0.700383064443688) * ax + 6.37396220353165) * ax
          + 33.912866078383) * ax + 112.079291497871) * ax + 221.213596169931) * ax
          + 220.206867912376)
      / (((((((0.0883883476483184 * ax + 1.75566716318264) * ax + 16.064177579207) * ax
          + 86.7807322029461) * ax + 296.564248779674) * ax + 637.333633378831) * ax
          + 793.826512519948) * ax + 440.413735824752);
  ELSE
    tail := exp(-0.5 * ax * ax)
      / (ax + 1 / (ax + 2 / (ax + 3 / (ax + 4 / (ax + 0.65))))) / 2.506628274631;
  END IF;
  IF x > 0 THEN
    RETURN 1 - tail;
  END IF;
  RETURN tail;
END
$$;
COMMENT ON FUNCTION lor.norm_cdf(double precision) IS
  'Standard normal CDF Phi(x) (Hart 1968 / West 2005 rational approximation, abs. error < 1e-15).';

-- The redshift marginal of one gmm_flow params array: box edges, normalised weights, means
-- and standard deviations in u. Raises on an array whose length does not match its header.
CREATE OR REPLACE FUNCTION lor.pz_marginal(
  params real[],
  OUT z_lo double precision,
  OUT z_hi double precision,
  OUT w double precision[],
  OUT mu double precision[],
  OUT sigma double precision[]
)
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
  k integer;
  d integer;
  n_tril integer;
  top double precision;
  total double precision := 0;
BEGIN
  k := params[1]::integer;
  d := params[2]::integer;
  IF k IS NULL OR d IS NULL OR k < 1 OR d < 1 THEN
    RAISE EXCEPTION 'pz: params header must start with K >= 1, D >= 1; got % and %',
      params[1], params[2];
  END IF;
  n_tril := d * (d + 1) / 2;
  IF cardinality(params) <> 4 + k * (1 + d + n_tril) THEN
    RAISE EXCEPTION 'pz: params has % floats, header (K=%, D=%) needs %',
      cardinality(params), k, d, 4 + k * (1 + d + n_tril);
  END IF;
  z_lo := params[3];
  z_hi := params[4];
  SELECT max(params[4 + i]) INTO top FROM generate_series(1, k) AS i;
  w := ARRAY[]::double precision[];
  mu := ARRAY[]::double precision[];
  sigma := ARRAY[]::double precision[];
  FOR i IN 1..k LOOP
    w := w || exp(params[4 + i]::double precision - top);
    total := total + w[i];
    mu := mu || params[4 + k + (i - 1) * d + 1]::double precision;
    sigma := sigma || abs(params[4 + k + k * d + (i - 1) * n_tril + 1]::double precision);
  END LOOP;
  FOR i IN 1..k LOOP
    w[i] := w[i] / total;
  END LOOP;
END
$$;
COMMENT ON FUNCTION lor.pz_marginal(real[]) IS
  'Redshift marginal of a gmm_flow params array: box (z_lo, z_hi), weights, means and stds in u = logit of the box.';

-- CDF of a 1-D Gaussian mixture at u (helper for pz_cdf and pz_quantile).
CREATE OR REPLACE FUNCTION lor.pz_mixture_cdf(
  u double precision, w double precision[], mu double precision[], sigma double precision[]
)
RETURNS double precision
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
  total double precision := 0;
BEGIN
  FOR i IN 1..cardinality(w) LOOP
    total := total + w[i] * lor.norm_cdf((u - mu[i]) / sigma[i]);
  END LOOP;
  RETURN total;
END
$$;
COMMENT ON FUNCTION lor.pz_mixture_cdf(double precision, double precision[], double precision[], double precision[]) IS
  'CDF at u of the Gaussian mixture with weights w, means mu and stds sigma (helper of pz_cdf, pz_quantile).';

-- Redshift probability density of a stored posterior (per unit z); 0 outside the box.
CREATE OR REPLACE FUNCTION lor.pz_pdf(params real[], z double precision)
RETURNS double precision
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
  m record;
  u double precision;
  t double precision;
  total double precision := 0;
BEGIN
  m := lor.pz_marginal(params);
  IF z <= m.z_lo OR z >= m.z_hi THEN
    RETURN 0;
  END IF;
  u := ln(z - m.z_lo) - ln(m.z_hi - z);
  FOR i IN 1..cardinality(m.w) LOOP
    t := (u - m.mu[i]) / m.sigma[i];
    IF t * t < 1400 THEN  -- exp() raises on underflow; beyond this the term is < 1e-300
      total := total + m.w[i] * exp(-0.5 * t * t) / m.sigma[i];
    END IF;
  END LOOP;
  RETURN total / sqrt(2 * pi()) * (m.z_hi - m.z_lo) / ((z - m.z_lo) * (m.z_hi - z));
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
  m record;
BEGIN
  m := lor.pz_marginal(params);
  IF z <= m.z_lo THEN
    RETURN 0;
  ELSIF z >= m.z_hi THEN
    RETURN 1;
  END IF;
  RETURN lor.pz_mixture_cdf(ln(z - m.z_lo) - ln(m.z_hi - z), m.w, m.mu, m.sigma);
END
$$;
COMMENT ON FUNCTION lor.pz_cdf(real[], double precision) IS
  'Redshift posterior CDF P(z_true <= z) of a gmm_flow params array.';

-- P(z1 < redshift < z2) of a stored posterior; 0 when z2 <= z1.
CREATE OR REPLACE FUNCTION lor.pz_prob(params real[], z1 double precision, z2 double precision)
RETURNS double precision
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
BEGIN
  IF z2 <= z1 THEN
    RETURN 0;
  END IF;
  RETURN least(1, greatest(0, lor.pz_cdf(params, z2) - lor.pz_cdf(params, z1)));
END
$$;
COMMENT ON FUNCTION lor.pz_prob(real[], double precision, double precision) IS
  'Posterior probability that z1 < redshift < z2 for a gmm_flow params array (0 if z2 <= z1).';

-- Redshift quantile of a stored posterior by bisection on the CDF over the box: 40 halvings
-- of the box width (< 1e-11 of it). q = 0 gives z_lo, q = 1 gives z_hi, other q outside
-- [0, 1] give NULL.
CREATE OR REPLACE FUNCTION lor.pz_quantile(params real[], q double precision)
RETURNS double precision
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
  m record;
  a double precision;
  b double precision;
  mid double precision;
BEGIN
  m := lor.pz_marginal(params);
  IF q < 0 OR q > 1 THEN
    RETURN NULL;
  ELSIF q = 0 THEN
    RETURN m.z_lo;
  ELSIF q = 1 THEN
    RETURN m.z_hi;
  END IF;
  a := m.z_lo;
  b := m.z_hi;
  FOR i IN 1..40 LOOP
    mid := 0.5 * (a + b);
    IF lor.pz_mixture_cdf(ln(mid - m.z_lo) - ln(m.z_hi - mid), m.w, m.mu, m.sigma) < q THEN
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
  lor.norm_cdf(double precision),
  lor.pz_marginal(real[]),
  lor.pz_mixture_cdf(double precision, double precision[], double precision[], double precision[]),
  lor.pz_pdf(real[], double precision),
  lor.pz_cdf(real[], double precision),
  lor.pz_prob(real[], double precision, double precision),
  lor.pz_quantile(real[], double precision)
TO lor_reader, lor_worker;
