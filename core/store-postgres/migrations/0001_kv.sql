-- govern's log store on PostgreSQL, schema version 1.
--
-- The log writes through a small key-value trait (govern-store's `Storage`): every key
-- begins with a byte naming what it holds (docs/formats.md, "Storage"), and its numbers are
-- big-endian, so byte order is the log's order. PostgreSQL orders `bytea` byte by byte, so
-- one table keyed by the whole key keeps every scan the log makes a range scan of its
-- primary key. The views below name each class for the people who operate the database.
CREATE TABLE govern_kv (
    key   bytea PRIMARY KEY,
    value bytea NOT NULL
);

-- e ‖ u64 index → leaf data
CREATE VIEW govern_entries AS
    SELECT ('x' || encode(substring(key FROM 2 FOR 8), 'hex'))::bit(64)::bigint AS index, value AS leaf_data
    FROM govern_kv WHERE key >= '\x65'::bytea AND key < '\x66'::bytea;
-- c ‖ u64 size → the checkpoint signed at that size, with its cosignatures once witnessed
CREATE VIEW govern_checkpoints AS
    SELECT ('x' || encode(substring(key FROM 2 FOR 8), 'hex'))::bit(64)::bigint AS size, convert_from(value, 'UTF8') AS note
    FROM govern_kv WHERE key >= '\x63'::bytea AND key < '\x64'::bytea;
-- h ‖ leaf hash → index
CREATE VIEW govern_leaf_index AS
    SELECT substring(key FROM 2) AS leaf_hash, ('x' || encode(value, 'hex'))::bit(64)::bigint AS index
    FROM govern_kv WHERE key >= '\x68'::bytea AND key < '\x69'::bytea;
-- u ‖ SHA-256(uniqueness key) → index
CREATE VIEW govern_uniqueness AS
    SELECT substring(key FROM 2) AS key_hash, ('x' || encode(value, 'hex'))::bit(64)::bigint AS index
    FROM govern_kv WHERE key >= '\x75'::bytea AND key < '\x76'::bytea;
-- n ‖ level ‖ index → tree node hash; b ‖ stratum ‖ tile → stratum blob
CREATE VIEW govern_tree_nodes AS
    SELECT get_byte(key, 1) AS level, ('x' || encode(substring(key FROM 3 FOR 8), 'hex'))::bit(64)::bigint AS index, value AS hash
    FROM govern_kv WHERE key >= '\x6e'::bytea AND key < '\x6f'::bytea;
-- m/… → the latest size, the cosigned size, the policy's snapshot
CREATE VIEW govern_meta AS
    SELECT convert_from(key, 'UTF8') AS name, value
    FROM govern_kv WHERE key >= '\x6d2f'::bytea AND key < '\x6d30'::bytea;
