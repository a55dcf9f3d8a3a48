-- Schema version 3: the sequencer's lease.
--
-- Every node over one database competes for this one row. A node holds the lease while
-- `expires` (the database's clock, the only clock the nodes share) is in the future; it
-- renews it well before then, and another node takes it only once it has expired, bumping
-- `term`. The lease says who should sequence and where clients find it (`url`); what makes a
-- deposed sequencer harmless is the writer epoch of version 2, which the node that takes the
-- lease then takes too.
CREATE TABLE govern_lease (
    id      boolean PRIMARY KEY DEFAULT true CHECK (id),
    holder  text NOT NULL,
    url     text NOT NULL,
    term    bigint NOT NULL,
    expires timestamptz NOT NULL
);
INSERT INTO govern_lease (id, holder, url, term, expires) VALUES (true, '', '', 0, '-infinity');
