-- Compaction during a partition, linear in what was appended (server/compaction.py):
-- `in_snapshot` is 1 for a row kept in the log (for a peer site that is behind) whose update
-- is in the document's snapshot already, so the next compaction does not merge it again
-- (a flag per row, not through_seq: a row committed late with a lower seq is still merged);
-- `catchup_level` is 0 for a row as it was appended, n for a catch-up row merged from rows of
-- level n - 1 or lower, so catch-up rows are merged again only a size class at a time.
ALTER TABLE updates ADD COLUMN in_snapshot integer NOT NULL DEFAULT 0;
ALTER TABLE updates ADD COLUMN catchup_level integer NOT NULL DEFAULT 0;
