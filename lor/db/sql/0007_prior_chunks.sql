-- lor SQL, installed by migration 0007. The work of a prior-only reprocess run, in chunks.
-- Edit by adding a new file and a new migration, never in place.
--
-- A prior change updates every stored posterior of the parent run from its stored
-- parameters and the two priors alone, so such a run needs no per-object work items: its
-- work is a few chunks per tract, each a range of the parent run's object ids. A worker
-- takes a chunk with FOR UPDATE SKIP LOCKED and, in that same transaction, reads the
-- parent posteriors of the range, writes the new ones and marks the chunk done: a worker
-- that dies rolls back and the chunk is pending again (no lease), and the posterior ids
-- (uuid5 of run and object) keep every object to one row.

CREATE TABLE IF NOT EXISTS lor.prior_chunks (
  run_id integer NOT NULL REFERENCES lor.processing_runs (id),
  tract_id integer NOT NULL,
  chunk integer NOT NULL,
  first_object_id uuid NOT NULL,
  last_object_id uuid NOT NULL,
  objects integer NOT NULL,
  state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
  attempts smallint NOT NULL DEFAULT 0,
  done_by text,
  last_error text,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, tract_id, chunk)
);
COMMENT ON TABLE lor.prior_chunks IS
  'Work of prior-only reprocess runs: ranges of the parent run''s posteriors, one transaction each.';
COMMENT ON COLUMN lor.prior_chunks.run_id IS 'The reprocess run (FK to processing_runs).';
COMMENT ON COLUMN lor.prior_chunks.tract_id IS 'Tract of the range.';
COMMENT ON COLUMN lor.prior_chunks.chunk IS 'Number of the range within its tract, from 0.';
COMMENT ON COLUMN lor.prior_chunks.first_object_id IS 'Smallest object id of the range.';
COMMENT ON COLUMN lor.prior_chunks.last_object_id IS 'Largest object id of the range (inclusive).';
COMMENT ON COLUMN lor.prior_chunks.objects IS
  'Parent posteriors with params in the range when queued; a worker checks it reads as many.';
COMMENT ON COLUMN lor.prior_chunks.state IS 'pending, done or failed.';
COMMENT ON COLUMN lor.prior_chunks.attempts IS 'Attempts that ended (done, or an error).';
COMMENT ON COLUMN lor.prior_chunks.done_by IS 'host:pid of the worker that stored the range.';
COMMENT ON COLUMN lor.prior_chunks.last_error IS 'Last failure message.';
COMMENT ON COLUMN lor.prior_chunks.updated_at IS 'Last state change.';

GRANT SELECT ON lor.prior_chunks TO lor_reader, lor_worker;
GRANT UPDATE ON lor.prior_chunks TO lor_worker;
