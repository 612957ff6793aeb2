-- Who made each update: a principal id ("name@site"), or "" for the server itself (and for
-- every row written before authors were recorded). Site batches carry it across links, so a
-- row replicated from a peer keeps the author its own site recorded.
ALTER TABLE updates ADD COLUMN author text NOT NULL DEFAULT '';
