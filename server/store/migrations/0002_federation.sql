-- Federation between sites: where each log row came from, and how far each peer site
-- acknowledged this site's log.

-- "" for updates this site's own clients made, otherwise the id of the peer site the row was
-- replicated from; a site sends its peers only its own rows. A constant default needs no
-- table rewrite (PostgreSQL 11+, SQLite), so this is instant even on a long log.
ALTER TABLE updates ADD COLUMN origin text NOT NULL DEFAULT '';

-- Per peer site, the highest seq of this site's log that the peer acknowledged. It only moves
-- forward; compaction keeps the rows after the lowest cursor of the peers sharing a document.
-- `at`: when the peer last acknowledged anything, to tell a silent peer from a slow one.
CREATE TABLE federation_cursors (
    peer      text PRIMARY KEY,
    acked_seq {bigint} NOT NULL,
    at        {at}
);
