-- Schema version 2: the fence of the log's one writer.
--
-- A store opened to write takes the next epoch (`UPDATE … SET epoch = epoch + 1`), and every
-- batch it writes first reads the epoch `FOR SHARE` in the same transaction and aborts unless
-- it is still its own. A writer that took over therefore waits for batches in flight to
-- commit, and from then on every batch of the writer it deposed fails: a sequencer that was
-- paused past its takeover and wakes up writes nothing.
CREATE TABLE govern_writer (
    id    boolean PRIMARY KEY DEFAULT true CHECK (id),
    epoch bigint NOT NULL
);
INSERT INTO govern_writer (id, epoch) VALUES (true, 0);
