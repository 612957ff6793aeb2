-- Which spaces each peer site holds whole: it was sent every document of the space (their
-- merged state, also what compaction had merged before the space was shared with it) and
-- acknowledged them. A space shared with a peer and not listed here gets that inventory
-- at the next link-up; from then on the log after the peer's cursor is enough.
CREATE TABLE federation_spaces (
    peer  text NOT NULL,
    space text NOT NULL,
    at    {at},
    PRIMARY KEY (peer, space)
);
