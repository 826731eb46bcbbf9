-- lor SQL, installed by migration 0006. Heartbeats of the processes that claim work, so a
-- dead holder's claims return to pending within seconds instead of at the end of their
-- lease. Edit by adding a new file and a new migration, never in place.
--
-- A claim records its holder in work_items.claimed_by (host:pid); the holder writes its
-- heartbeat here every few seconds (lor.runs.heartbeat). Claims whose holder has not
-- beaten for longer than the sweeper's dead-after time are requeued like expired ones; a
-- holder without a row (a process that never beat) keeps the lease as its only bound.

CREATE TABLE IF NOT EXISTS lor.workers (
  name text PRIMARY KEY,
  host text NOT NULL,
  pid integer NOT NULL,
  kind text NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE lor.workers IS
  'Processes that claim work (lor process, Celery pool processes) and their last heartbeat.';
COMMENT ON COLUMN lor.workers.name IS 'host:pid, as work_items.claimed_by records it.';
COMMENT ON COLUMN lor.workers.host IS 'Host name of the process.';
COMMENT ON COLUMN lor.workers.pid IS 'Process id on that host.';
COMMENT ON COLUMN lor.workers.kind IS 'What the process is: process (lor process) or celery.';
COMMENT ON COLUMN lor.workers.started_at IS 'When the process first beat.';
COMMENT ON COLUMN lor.workers.heartbeat_at IS
  'Last heartbeat; a holder silent for longer than the dead-after time loses its claims.';

GRANT SELECT ON lor.workers TO lor_reader, lor_worker;
GRANT INSERT, UPDATE, DELETE ON lor.workers TO lor_worker;
