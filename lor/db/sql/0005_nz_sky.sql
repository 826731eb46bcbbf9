-- lor SQL, installed by migration 0005. Redshift distributions n(z) of selections of stored
-- posteriors, tomographic binning, and positions: a native sky index, cone search and
-- cross-match. Edit by adding a new file and a new migration, never in place.
--
-- Part 1: n(z). The n(z) of a selection is the stacked redshift density on a grid,
-- n(z_j) = (1/N) sum_i p_i(z_j), over the N selected objects that have a posterior, on the
-- grid z_j = zmin + j (zmax - zmin) / (n - 1), j = 0 .. n - 1 (numpy.linspace(zmin, zmax, n);
-- lor.nz_grid returns it). Each p_i is the gmm_flow redshift marginal that lor.pz_pdf
-- evaluates (layout: sql/0002_posteriors.sql), so lor.nz(params, zmin, zmax, n) equals the
-- mean of lor.pz_pdf(params, z_j) over the rows, up to rounding and to the terms it skips:
-- a component's term at a grid point is skipped only where it is below 1e-13 / sqrt(2 pi)
-- (its Gaussian more than T standard deviations away, T from the component's weight and
-- width and the largest Jacobian dz -> u on the grid), so each object's density is exact to
-- ~4e-13 absolute and n(z) agrees with the Python representation
-- (GaussianMixtureFlow.z_pdf averaged over objects) far inside the 1e-9 the tests assert.
--
-- The representation: a params array carries its layout header (K, D, z_lo, z_hi), which
-- these functions check exactly as lor.pz_* do, but not the representation's name. The name
-- and version are the row's representation_name and representation_version columns
-- (lor.run_posteriors and lor.latest_posteriors return them); every stored posterior today
-- is gmm_flow v1, and a query over a mixed selection should filter on
-- representation_name = 'gmm_flow' (lor nz in Python refuses any other name).
--
-- Cost: an aggregate written in PL/pgSQL receives its state as a flat array on every row
-- (PostgreSQL copies a non-internal transition state per call), so the state is kept small:
-- the accumulators, the grid in u and the Jacobian (3n + 9 floats). Per object the work is
-- one exp per component and grid point inside the component's window, ~0.15 us each in
-- PL/pgSQL; the shipped estimator's broad-band posteriors have wide components, about 1,000
-- terms per object on 301 points, so ~0.15 ms per object (a C aggregate would be ~50x
-- faster; PL/pgSQL is what the embedded server and any server run without extensions). The
-- aggregate is parallel safe with a combine function: large selections use every worker.
-- Uncertainty: lor.nz_group(catalog_id) splits objects into 32 pseudo-random groups, n(z)
-- is computed per group in the same query (GROUP BY) and the aggregate lor.nz_jackknife
-- combines the groups into n(z) with its delete-one-group jackknife standard error.

-- The grid of lor.nz: numpy.linspace(zmin, zmax, n).
CREATE OR REPLACE FUNCTION lor.nz_grid(zmin double precision, zmax double precision, n integer)
RETURNS double precision[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
  SELECT array_agg(CASE WHEN j = n - 1 THEN zmax ELSE zmin + j * ((zmax - zmin) / (n - 1)) END
                   ORDER BY j)
  FROM generate_series(0, n - 1) AS j
$$;
COMMENT ON FUNCTION lor.nz_grid(double precision, double precision, integer) IS
  'The redshift grid of lor.nz(params, zmin, zmax, n): n points from zmin to zmax (numpy.linspace).';

-- Transition function of lor.nz. State s (double precision[], 1-based):
--   s[1] n, s[2] zmin, s[3] zmax, s[4] z_lo and s[5] z_hi of the box the cache below was
--   built for (NaN before the first posterior), s[6] objects counted, s[7] ln of the largest
--   Jacobian du/dz on the grid inside that box, s[8] and s[9] the first and last grid index
--   (0-based) inside it; then, for grid point j = 0 .. n - 1: s[10 + j] the accumulator
--   (sum over objects and components of w / sd exp(-t^2 / 2) du/dz), s[10 + n + j] the
--   grid point in u (NaN outside the box) and s[10 + 2n + j] ln du/dz.
-- Each term is one exp(ln(w / sd) + ln du/dz - (u - mu)^2 / (2 sd^2)) in one statement: the
-- per-point cost is what sets the aggregate's speed. A posterior whose box differs from the
-- cached one (another model) is evaluated at every grid point without the window: correct,
-- slower, rare. NULL params (no posterior) are not counted.
CREATE OR REPLACE FUNCTION lor.nz_step(
  s double precision[], params real[], zmin double precision, zmax double precision,
  n integer
)
RETURNS double precision[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE COST 5000
AS $$
DECLARE
  k integer;
  d integer;
  n_tril integer;
  z_lo double precision;
  z_hi double precision;
  dz double precision;
  z double precision;
  jac double precision;
  jac_max double precision := 0;
  top double precision;
  ln_total double precision;
  total double precision := 0;
  lc double precision;
  mu double precision;
  sd double precision;
  h double precision;
  lt double precision;
  half double precision;
  ja integer;
  jb integer;
  t double precision;
  m integer;
  q integer;
  n2 integer := 2 * n;
BEGIN
  IF s IS NULL THEN
    IF n IS NULL OR n < 2 OR NOT (zmax > zmin) OR zmin = '-Infinity' OR zmax = 'Infinity' THEN
      RAISE EXCEPTION 'nz: the grid needs n >= 2 points and finite zmin < zmax; got n = %, zmin = %, zmax = %',
        n, zmin, zmax;
    END IF;
    s := array_fill(0::double precision, ARRAY[9 + 3 * n]);
    s[1] := n;
    s[2] := zmin;
    s[3] := zmax;
    s[4] := 'NaN';
    s[5] := 'NaN';
  ELSIF s[1] <> n OR s[2] <> zmin OR s[3] <> zmax THEN
    RAISE EXCEPTION 'nz: the grid must be the same on every row; got (%, %, %) after (%, %, %)',
      zmin, zmax, n, s[2], s[3], s[1];
  END IF;
  IF params IS NULL THEN
    RETURN s;
  END IF;
  k := params[1];
  d := params[2];
  IF k IS NULL OR d IS NULL OR k < 1 OR d < 1
     OR cardinality(params) <> 4 + k * (1 + d + d * (d + 1) / 2) THEN
    IF array_ndims(params) <> 1 THEN
      RAISE EXCEPTION 'nz: params must be a 1-D array; got % dimensions', array_ndims(params);
    ELSIF k IS NULL OR d IS NULL OR k < 1 OR d < 1 THEN
      RAISE EXCEPTION 'nz: params header must start with K >= 1, D >= 1; got % and %',
        params[1], params[2];
    END IF;
    RAISE EXCEPTION 'nz: params has % floats, header (K=%, D=%) needs %',
      cardinality(params), k, d, 4 + k * (1 + d + d * (d + 1) / 2);
  END IF;
  z_lo := params[3];
  z_hi := params[4];
  dz := (zmax - zmin) / (n - 1);
  IF s[4] = 'NaN'::double precision THEN  -- first posterior: cache the grid for its box
    s[8] := n;
    s[9] := -1;
    FOR j IN 0 .. n - 1 LOOP
      z := CASE WHEN j = n - 1 THEN zmax ELSE zmin + j * dz END;
      IF z > z_lo AND z < z_hi THEN
        jac := (z_hi - z_lo) / ((z - z_lo) * (z_hi - z));
        s[10 + n + j] := ln(z - z_lo) - ln(z_hi - z);
        s[10 + n2 + j] := ln(jac);
        jac_max := greatest(jac_max, jac);
        s[8] := least(s[8], j);
        s[9] := j;
      ELSE
        s[10 + n + j] := 'NaN';
      END IF;
    END LOOP;
    s[4] := z_lo;
    s[5] := z_hi;
    s[7] := CASE WHEN jac_max > 0 THEN ln(jac_max) ELSE 0 END;
  END IF;
  n_tril := d * (d + 1) / 2;
  top := params[5];
  FOR i IN 6 .. 4 + k LOOP
    top := greatest(top, params[i]);
  END LOOP;
  FOR i IN 5 .. 4 + k LOOP
    total := total + exp(params[i] - top);
  END LOOP;
  ln_total := ln(total);
  m := 5 + k;
  q := 5 + k + k * d;
  FOR i IN 5 .. 4 + k LOOP
    sd := abs(params[q]);
    IF NOT (sd > 0 AND sd < 'Infinity') THEN
      RAISE EXCEPTION 'nz: component % has redshift scale %; it must be positive and finite',
        i - 4, params[q];
    END IF;
    mu := params[m];
    lc := params[i] - top - ln_total - ln(sd);  -- ln(w / sd)
    h := 0.5 / (sd * sd);
    IF z_lo = s[4] AND z_hi = s[5] THEN
      -- Window: the term (w / sd) exp(-t^2 / 2) du/dz is below 1e-13 where t^2 > 2 lt.
      lt := lc + s[7] + 29.933606208922594;  -- ln(1e13)
      IF lt > 0 THEN
        half := sqrt(2 * lt) * sd;
        ja := s[8];
        jb := s[9];
        IF mu - half > 700 THEN
          ja := n;
        ELSIF mu - half > -700 THEN
          ja := greatest(ja, ceil((z_lo + (z_hi - z_lo) / (1 + exp(half - mu)) - zmin) / dz));
        END IF;
        IF mu + half < -700 THEN
          jb := -1;
        ELSIF mu + half < 700 THEN
          jb := least(jb, floor((z_lo + (z_hi - z_lo) / (1 + exp(-mu - half)) - zmin) / dz));
        END IF;
        FOR j IN 10 + ja .. 10 + jb LOOP
          s[j] := s[j] + exp(lc + s[j + n2] - (s[j + n] - mu) * (s[j + n] - mu) * h);
        END LOOP;
      END IF;
    ELSE
      FOR j IN 0 .. n - 1 LOOP
        z := CASE WHEN j = n - 1 THEN zmax ELSE zmin + j * dz END;
        IF z > z_lo AND z < z_hi THEN
          t := (ln(z - z_lo) - ln(z_hi - z) - mu) / sd;
          IF t * t < 1400 THEN  -- exp() raises on underflow; beyond this the term is < 1e-300
            s[10 + j] := s[10 + j]
              + exp(lc - 0.5 * t * t) * (z_hi - z_lo) / ((z - z_lo) * (z_hi - z));
          END IF;
        END IF;
      END LOOP;
    END IF;
    m := m + d;
    q := q + n_tril;
  END LOOP;
  s[6] := s[6] + 1;
  RETURN s;
END
$$;
COMMENT ON FUNCTION lor.nz_step(double precision[], real[], double precision, double precision, integer) IS
  'Transition function of the aggregate lor.nz (state layout: sql/0005_nz_sky.sql).';

-- Combine function of lor.nz (parallel aggregation): sums counts and accumulators; keeps the
-- first state's cache.
CREATE OR REPLACE FUNCTION lor.nz_combine(a double precision[], b double precision[])
RETURNS double precision[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
  IF a IS NULL THEN
    RETURN b;
  ELSIF b IS NULL THEN
    RETURN a;
  ELSIF a[1] <> b[1] OR a[2] <> b[2] OR a[3] <> b[3] THEN
    RAISE EXCEPTION 'nz: cannot combine grids (%, %, %) and (%, %, %)',
      a[2], a[3], a[1], b[2], b[3], b[1];
  END IF;
  IF a[4] = 'NaN'::double precision THEN  -- keep a cache if either state has one
    a[4 : 5] := b[4 : 5];
    a[7 : 9] := b[7 : 9];
    a[10 + a[1]::integer : cardinality(a)] := b[10 + a[1]::integer : cardinality(a)];
  END IF;
  a[6] := a[6] + b[6];
  FOR j IN 10 .. 9 + a[1]::integer LOOP
    a[j] := a[j] + b[j];
  END LOOP;
  RETURN a;
END
$$;
COMMENT ON FUNCTION lor.nz_combine(double precision[], double precision[]) IS
  'Combine function of the aggregate lor.nz (parallel partial states).';

-- Final function of lor.nz: the mean density; NULL when no row had a posterior.
CREATE OR REPLACE FUNCTION lor.nz_final(s double precision[])
RETURNS double precision[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE WHEN s[6] > 0 THEN
    ARRAY(SELECT s[9 + j] / (s[6] * 2.5066282746310002) FROM generate_series(1, s[1]::integer) AS j
          ORDER BY j)
  END
$$;
COMMENT ON FUNCTION lor.nz_final(double precision[]) IS
  'Final function of the aggregate lor.nz: accumulators / (objects * sqrt(2 pi)).';

DROP AGGREGATE IF EXISTS lor.nz(real[], double precision, double precision, integer);
CREATE AGGREGATE lor.nz(params real[], zmin double precision, zmax double precision, n integer) (
  SFUNC = lor.nz_step,
  STYPE = double precision[],
  FINALFUNC = lor.nz_final,
  COMBINEFUNC = lor.nz_combine,
  PARALLEL = SAFE
);
COMMENT ON AGGREGATE lor.nz(real[], double precision, double precision, integer) IS
  'n(z): mean redshift density of the selected gmm_flow posteriors on lor.nz_grid(zmin, zmax, n) '
  '(rows with NULL params are not counted; NULL if none has a posterior).';

-- Jackknife group of an object: 32 groups from a hash of its catalog id (any bigint key).
CREATE OR REPLACE FUNCTION lor.nz_group(key bigint)
RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT (hashint8extended(key, 15) & 31)::integer $$;
COMMENT ON FUNCTION lor.nz_group(bigint) IS
  'Jackknife group (0-31) of an object, from a hash of its catalog id: GROUP BY it, then lor.nz_jackknife.';

CREATE TYPE lor.nz_estimate AS (
  nz double precision[],
  nz_err double precision[],
  n_objects bigint,
  n_groups integer
);
COMMENT ON TYPE lor.nz_estimate IS
  'n(z) with its delete-one-group jackknife standard error, objects and groups used.';

-- Transition of lor.nz_jackknife: appends (objects, n(z) ...) of one group.
CREATE OR REPLACE FUNCTION lor.nz_jackknife_step(
  s double precision[], nz double precision[], n_objects bigint
)
RETURNS double precision[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
  IF nz IS NULL OR n_objects IS NULL OR n_objects < 1 THEN
    RETURN s;
  ELSIF s IS NOT NULL AND cardinality(nz) <> s[1] THEN
    RAISE EXCEPTION 'nz_jackknife: every group needs the same grid; got % points after %',
      cardinality(nz), s[1];
  END IF;
  RETURN coalesce(s, ARRAY[cardinality(nz)::double precision]) || n_objects::double precision || nz;
END
$$;

-- Final function of lor.nz_jackknife. With groups g = 1..G of N_g objects and n(z) n_g,
-- n = sum_g N_g n_g / N; n_(g) = (N n - N_g n_g) / (N - N_g) leaves group g out, and
-- err^2 = (G - 1) / G sum_g (n_(g) - mean_g n_(g))^2.
CREATE OR REPLACE FUNCTION lor.nz_jackknife_final(s double precision[])
RETURNS lor.nz_estimate
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
  m integer;
  g integer;
  n_all double precision := 0;
  total double precision[];
  loo double precision[];
  mean double precision[];
  var double precision[];
  out lor.nz_estimate;
BEGIN
  IF s IS NULL THEN
    RETURN NULL;
  END IF;
  m := s[1];
  g := (cardinality(s) - 1) / (m + 1);
  total := array_fill(0::double precision, ARRAY[m]);
  FOR i IN 0 .. g - 1 LOOP
    n_all := n_all + s[2 + i * (m + 1)];
    FOR j IN 1 .. m LOOP
      total[j] := total[j] + s[2 + i * (m + 1)] * s[2 + i * (m + 1) + j];
    END LOOP;
  END LOOP;
  out.n_objects := n_all;
  out.n_groups := g;
  out.nz := ARRAY(SELECT total[j] / n_all FROM generate_series(1, m) AS j ORDER BY j);
  IF g < 2 THEN
    RETURN out;  -- nz_err NULL: one group cannot estimate a spread
  END IF;
  mean := array_fill(0::double precision, ARRAY[m]);
  var := array_fill(0::double precision, ARRAY[m]);
  loo := array_fill(0::double precision, ARRAY[g * m]);
  FOR i IN 0 .. g - 1 LOOP
    FOR j IN 1 .. m LOOP
      loo[i * m + j] := (total[j] - s[2 + i * (m + 1)] * s[2 + i * (m + 1) + j])
        / (n_all - s[2 + i * (m + 1)]);
      mean[j] := mean[j] + loo[i * m + j] / g;
    END LOOP;
  END LOOP;
  FOR i IN 0 .. g - 1 LOOP
    FOR j IN 1 .. m LOOP
      var[j] := var[j] + (loo[i * m + j] - mean[j]) ^ 2;
    END LOOP;
  END LOOP;
  out.nz_err := ARRAY(SELECT sqrt(var[j] * (g - 1) / g) FROM generate_series(1, m) AS j ORDER BY j);
  RETURN out;
END
$$;

DROP AGGREGATE IF EXISTS lor.nz_jackknife(double precision[], bigint);
CREATE AGGREGATE lor.nz_jackknife(nz double precision[], n_objects bigint) (
  SFUNC = lor.nz_jackknife_step,
  STYPE = double precision[],
  FINALFUNC = lor.nz_jackknife_final
);
COMMENT ON AGGREGATE lor.nz_jackknife(double precision[], bigint) IS
  'n(z) and its delete-one-group jackknife error from per-group lor.nz results and object counts '
  '(one row per lor.nz_group).';

-- Tomographic bins. edges is an ascending array of bin edges; bin i (1-based) is
-- edges[i] <= z < edges[i + 1]; outside every bin the result is NULL.
CREATE OR REPLACE FUNCTION lor.tomo_bin(z double precision, edges double precision[])
RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
  SELECT CASE WHEN b BETWEEN 1 AND cardinality(edges) - 1 THEN b END
  FROM width_bucket(z, edges) AS b
$$;
COMMENT ON FUNCTION lor.tomo_bin(double precision, double precision[]) IS
  'Tomographic bin (1-based) of a point estimate, e.g. z_q50: edges[i] <= z < edges[i+1]; NULL outside.';

-- P(edges[i] < z < edges[i + 1]) for every bin, from the CDF at each edge (one pz_cdf each).
CREATE OR REPLACE FUNCTION lor.pz_bin_probs(params real[], edges double precision[])
RETURNS double precision[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
  cdf double precision[];
BEGIN
  IF array_ndims(edges) <> 1 OR cardinality(edges) < 2 THEN
    RAISE EXCEPTION 'pz_bin: edges must be a 1-D array of at least 2 values';
  END IF;
  FOR i IN 1 .. cardinality(edges) LOOP
    IF i > 1 AND NOT edges[i] > edges[i - 1] THEN
      RAISE EXCEPTION 'pz_bin: edges must increase; got % after %', edges[i], edges[i - 1];
    END IF;
    cdf[i] := lor.pz_cdf(params, edges[i]);
  END LOOP;
  RETURN ARRAY(SELECT greatest(0, cdf[i + 1] - cdf[i]) FROM generate_series(1, cardinality(edges) - 1) AS i
               ORDER BY i);
END
$$;
COMMENT ON FUNCTION lor.pz_bin_probs(real[], double precision[]) IS
  'Posterior probability of each tomographic bin edges[i] < z < edges[i+1] of a gmm_flow params array.';

-- The bin an object most probably lies in, if that probability is at least p_min.
CREATE OR REPLACE FUNCTION lor.pz_bin(params real[], edges double precision[], p_min double precision DEFAULT 0)
RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
  SELECT CASE WHEN p >= p_min THEN i::integer END
  FROM unnest(lor.pz_bin_probs(params, edges)) WITH ORDINALITY AS b(p, i)
  ORDER BY p DESC, i
  LIMIT 1
$$;
COMMENT ON FUNCTION lor.pz_bin(real[], double precision[], double precision) IS
  'Tomographic bin (1-based) with the largest posterior probability P(z in bin), NULL if it is below p_min.';

GRANT EXECUTE ON FUNCTION
  lor.nz_grid(double precision, double precision, integer),
  lor.nz_step(double precision[], real[], double precision, double precision, integer),
  lor.nz_combine(double precision[], double precision[]),
  lor.nz_final(double precision[]),
  lor.nz_group(bigint),
  lor.nz_jackknife_step(double precision[], double precision[], bigint),
  lor.nz_jackknife_final(double precision[]),
  lor.tomo_bin(double precision, double precision[]),
  lor.pz_bin_probs(real[], double precision[]),
  lor.pz_bin(real[], double precision[], double precision)
TO lor_reader, lor_worker;

-- Part 2: positions. The zones method (Gray, Szalay et al. 2006, "There goes the
-- neighborhood: relational algebra for spatial data search", the SDSS SkyServer's): the sky
-- is cut into declination zones 0.05 deg high, and a btree on (zone, ra) turns a cone into
-- one index range per zone and RA interval. lor.sky_zone(dec) is the indexed expression (no
-- new column, no extension: the same on PostgreSQL 15 and the embedded 16), ix_objects_sky
-- the index on every partition of lor.objects; ANALYZE keeps statistics of the zones, so
-- the planner knows a zone holds a sliver of the table. The ranges are a superset of the
-- cone (RA half-width asin(sin r / cos dec) at the widest, 1e-9 deg of slack); the exact
-- angular distance (haversine, lor.sky_sep_deg) then keeps the objects within the radius.
-- The search of each range, and the lookup of each object's posteriors, are LATERAL
-- subqueries kept apart with OFFSET 0, so each is an index search whatever the planner
-- guesses of how few rows they return. lor.sky_zone must never change (the index stores
-- its values): a new zoning means a new function and a new index.

CREATE OR REPLACE FUNCTION lor.sky_zone("dec" double precision)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT floor(("dec" + 90) * 20)::integer $$;
COMMENT ON FUNCTION lor.sky_zone(double precision) IS
  'Declination zone (0.05 deg high, 0 at dec = -90) of the sky index on lor.objects.';

CREATE INDEX IF NOT EXISTS ix_objects_sky ON lor.objects (lor.sky_zone("dec"), ra);
COMMENT ON INDEX lor.ix_objects_sky IS
  'Positions: btree on (lor.sky_zone(dec), ra); lor.cone and lor.crossmatch search it.';

-- Angular distance in degrees (haversine; accurate at all separations that matter here).
CREATE OR REPLACE FUNCTION lor.sky_sep_deg(
  ra1 double precision, dec1 double precision, ra2 double precision, dec2 double precision
)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT 2 * asind(least(1, sqrt(power(sind((dec2 - dec1) / 2), 2)
                                 + cosd(dec1) * cosd(dec2) * power(sind((ra2 - ra1) / 2), 2))))
$$;
COMMENT ON FUNCTION lor.sky_sep_deg(double precision, double precision, double precision, double precision) IS
  'Angular separation in degrees between (ra1, dec1) and (ra2, dec2), haversine formula.';

-- The (zone, RA interval) ranges of the index that cover the cone of radius r (deg) around
-- (ra, dec): one per zone and interval (two intervals where the cone crosses RA 0; every RA
-- where it holds a pole). A negative or NULL radius gives no range. Not STRICT, so the
-- planner inlines it (a SQL function called per row costs milliseconds; inlined,
-- microseconds), and with constant arguments it knows how many zones there are.
CREATE OR REPLACE FUNCTION lor.sky_ranges(ra double precision, "dec" double precision, radius double precision)
RETURNS TABLE (zone integer, ra_lo double precision, ra_hi double precision)
LANGUAGE sql IMMUTABLE PARALLEL SAFE ROWS 8
AS $$
  SELECT z, iv.lo, iv.hi
  FROM (SELECT greatest(-90, "dec" - radius - 1e-9) AS dlo,
               least(90, "dec" + radius + 1e-9) AS dhi,
               CASE WHEN abs("dec") + radius + 1e-9 >= 90 THEN 180
                    ELSE asind(least(1, sind(radius) / cosd("dec"))) + 1e-9 END AS half
        WHERE radius >= 0 AND ra >= 0 AND ra < 360 AND abs("dec") <= 90) AS c
  CROSS JOIN LATERAL (VALUES  -- RA intervals in [0, 360]; NULL where not needed
    (CASE WHEN c.half >= 180 THEN 0 ELSE greatest(0, ra - c.half) END,
     CASE WHEN c.half >= 180 THEN 360 ELSE least(360, ra + c.half) END),
    (CASE WHEN c.half < 180 AND ra - c.half < 0 THEN ra - c.half + 360 END, 360),
    (0, CASE WHEN c.half < 180 AND ra + c.half >= 360 THEN ra + c.half - 360 END)
  ) AS iv (lo, hi)
  CROSS JOIN LATERAL generate_series(floor((c.dlo + 90) * 20)::integer,
                                     floor((c.dhi + 90) * 20)::integer) AS z
  WHERE iv.lo IS NOT NULL AND iv.hi IS NOT NULL
$$;
COMMENT ON FUNCTION lor.sky_ranges(double precision, double precision, double precision) IS
  'Index ranges (zone, ra_lo, ra_hi) covering the cone of radius (deg) around (ra, dec).';

-- Current object versions within radius_deg of (ra, dec), through the index.
CREATE OR REPLACE FUNCTION lor.cone_objects(
  p_ra double precision, p_dec double precision, p_radius_deg double precision
)
RETURNS TABLE (
  sep_deg double precision,
  tract_id integer,
  object_id uuid,
  catalog_id bigint,
  ra double precision,
  "dec" double precision,
  release_id integer
)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT o.sep_deg, o.tract_id, o.object_id, o.catalog_id, o.ra, o.dec, o.release_id
  FROM lor.sky_ranges($1, $2, $3) AS r
  CROSS JOIN LATERAL (
    SELECT lor.sky_sep_deg($1, $2, o.ra, o.dec) AS sep_deg, o.*
    FROM lor.objects o
    WHERE lor.sky_zone(o.dec) = r.zone AND o.ra BETWEEN r.ra_lo AND r.ra_hi
    OFFSET 0) AS o
  WHERE o.superseded_release_id IS NULL AND o.sep_deg <= $3
$$;
COMMENT ON FUNCTION lor.cone_objects(double precision, double precision, double precision) IS
  'Current object versions within radius_deg of (ra, dec) (index search on lor.sky_zone, ra), with separations.';

-- Objects within radius_deg of (ra, dec) with their latest posterior (the columns of
-- lor.latest_posteriors, plus sep_deg): over all runs, or only run p_run. "Latest" is as in
-- lor.latest_posteriors: the newest object version that has a posterior, then the newest
-- row. LANGUAGE sql and not STRICT: inlined into the caller's query, so only the columns it
-- selects are read and nothing is materialized.
CREATE OR REPLACE FUNCTION lor.cone(
  p_ra double precision, p_dec double precision, p_radius_deg double precision,
  p_run integer DEFAULT NULL
)
RETURNS TABLE (
  sep_deg double precision,
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
  SELECT DISTINCT ON (o.tract_id, o.catalog_id)
         lor.sky_sep_deg($1, $2, o.ra, o.dec), p.posterior_id, p.run_id, p.tract_id,
         p.object_id, o.catalog_id, o.ra, o.dec,
         p.representation_name, p.representation_version, p.params,
         p.z_mean, p.z_mode, p.z_std, p.z_q025, p.z_q16, p.z_q50, p.z_q84, p.z_q975,
         p.log_mstar_mean, p.log_mstar_mode, p.log_mstar_std, p.log_mstar_q025,
         p.log_mstar_q16, p.log_mstar_q50, p.log_mstar_q84, p.log_mstar_q975,
         p.log_sfr_mean, p.log_sfr_mode, p.log_sfr_std, p.log_sfr_q025,
         p.log_sfr_q16, p.log_sfr_q50, p.log_sfr_q84, p.log_sfr_q975,
         p.ood_flags, p.method, p.parent_posterior_id, p.input_hash, p.worker_host,
         p.created_at
  FROM lor.sky_ranges($1, $2, $3) AS r
  CROSS JOIN LATERAL (
    SELECT o.tract_id, o.object_id, o.catalog_id, o.release_id, o.ra, o.dec
    FROM lor.objects o
    WHERE lor.sky_zone(o.dec) = r.zone AND o.ra BETWEEN r.ra_lo AND r.ra_hi
    OFFSET 0) AS o
  CROSS JOIN LATERAL (
    SELECT p.*
    FROM lor.posteriors p
    WHERE p.tract_id = o.tract_id AND p.object_id = o.object_id AND ($4 IS NULL OR p.run_id = $4)
    OFFSET 0) AS p
  JOIN lor.releases rel ON rel.id = o.release_id
  WHERE lor.sky_sep_deg($1, $2, o.ra, o.dec) <= $3
  ORDER BY o.tract_id, o.catalog_id, rel.sequence DESC, p.created_at DESC, p.posterior_id DESC
$$;
COMMENT ON FUNCTION lor.cone(double precision, double precision, double precision, integer) IS
  'Objects within radius_deg of (ra, dec) with their latest posterior (over all runs, or run p_run), '
  'through the sky index; sep_deg is the angular distance.';

-- Cross-match: for every external position i (1-based, the order of the arrays), each
-- object within radius_arcsec with its latest posterior, nearest first (match_rank 1 is the
-- nearest). A positional join, one index search per position. JIT off: the planner cannot
-- know how few rows each search returns, costs a large cross-match in the millions, and
-- would spend seconds compiling it. For a table of positions, pass array_agg(ra) and
-- array_agg(dec) (ordered alike).
CREATE OR REPLACE FUNCTION lor.crossmatch(
  p_ra double precision[], p_dec double precision[], p_radius_arcsec double precision,
  p_run integer DEFAULT NULL
)
RETURNS TABLE (
  idx integer,
  match_rank integer,
  sep_arcsec double precision,
  catalog_id bigint,
  ra double precision,
  "dec" double precision,
  posterior_id uuid,
  run_id integer,
  tract_id integer,
  params real[],
  z_mean real, z_std real, z_q16 real, z_q50 real, z_q84 real,
  log_mstar_q16 real, log_mstar_q50 real, log_mstar_q84 real,
  log_sfr_q16 real, log_sfr_q50 real, log_sfr_q84 real,
  ood_flags integer
)
LANGUAGE sql STABLE PARALLEL SAFE
SET jit = off
AS $$
  SELECT x.i::integer,
         row_number() OVER (PARTITION BY x.i ORDER BY c.sep_deg, c.catalog_id)::integer,
         c.sep_deg * 3600, c.catalog_id, c.ra, c.dec, c.posterior_id, c.run_id, c.tract_id,
         c.params, c.z_mean, c.z_std, c.z_q16, c.z_q50, c.z_q84,
         c.log_mstar_q16, c.log_mstar_q50, c.log_mstar_q84,
         c.log_sfr_q16, c.log_sfr_q50, c.log_sfr_q84, c.ood_flags
  FROM unnest($1, $2) WITH ORDINALITY AS x(ra, "dec", i)
  CROSS JOIN LATERAL lor.cone(x.ra, x.dec, $3 / 3600, $4) AS c
  ORDER BY x.i, c.sep_deg, c.catalog_id
$$;
COMMENT ON FUNCTION lor.crossmatch(double precision[], double precision[], double precision, integer) IS
  'Cross-match external positions (arrays ra, dec) with objects within radius_arcsec and their latest '
  'posteriors (over all runs or run p_run); idx is the 1-based position, match_rank 1 the nearest.';

GRANT EXECUTE ON FUNCTION
  lor.sky_zone(double precision),
  lor.sky_sep_deg(double precision, double precision, double precision, double precision),
  lor.sky_ranges(double precision, double precision, double precision),
  lor.cone_objects(double precision, double precision, double precision),
  lor.cone(double precision, double precision, double precision, integer),
  lor.crossmatch(double precision[], double precision[], double precision, integer)
TO lor_reader, lor_worker;
