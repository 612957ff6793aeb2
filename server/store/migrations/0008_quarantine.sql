-- Stored updates that could not be applied when their document was loaded (written by an
-- older release, or damaged): set aside here, so the document loads without them, and kept
-- for an operator to look at. `reason` says what the CRDT core said.
CREATE TABLE quarantined_updates (
    doc    text NOT NULL,
    data   {blob} NOT NULL,
    reason text NOT NULL,
    at     {at}
);
