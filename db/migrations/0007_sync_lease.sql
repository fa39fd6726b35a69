-- At most one unfinished run per connection: the row itself is the lease that keeps a retried sync
-- attempt from overlapping one a presumed-dead worker is still running (no pooled connection is held).
CREATE UNIQUE INDEX sync_runs_unfinished_idx ON sync_runs (connection_id) WHERE finished_at IS NULL;
