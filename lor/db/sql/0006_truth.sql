-- lor SQL, installed by migration 0006. True redshifts of simulated or spectroscopic objects,
-- so posteriors can be checked against them in SQL and on the run dashboard (photo-z against
-- truth, PIT, coverage). Edit by adding a new file and a new migration, never in place.

CREATE TABLE IF NOT EXISTS lor.truth (
  catalog_id bigint PRIMARY KEY,
  redshift real NOT NULL,
  source text NOT NULL,
  loaded_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE lor.truth IS
  'Known redshifts by catalog id (simulation truth or spectroscopy), loaded by lor truth.';
COMMENT ON COLUMN lor.truth.catalog_id IS 'Catalog id of the object (objects.catalog_id).';
COMMENT ON COLUMN lor.truth.redshift IS 'True (or spectroscopic) redshift.';
COMMENT ON COLUMN lor.truth.source IS 'Where it came from: a file, a survey, a simulation.';
COMMENT ON COLUMN lor.truth.loaded_at IS 'When it was loaded.';

GRANT SELECT ON lor.truth TO lor_reader, lor_worker;
