-- Rows kept in the log for a peer site that is behind are merged into catch-up rows in size
-- classes (server/compaction.py): `catchup_level` is 0 for a row as it was appended, n for a
-- catch-up row merged from rows of level n - 1 or lower, so no row is merged once per
-- compaction and the work during a long partition stays linear in what was appended.
ALTER TABLE updates ADD COLUMN catchup_level integer NOT NULL DEFAULT 0;
