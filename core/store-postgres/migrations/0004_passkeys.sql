-- Schema version 4: the edge's passkey state (webauthn-rs's, with each credential's signature
-- counter), by tenant and credential id. On one machine the edge keeps it in files in the
-- data dir; nodes sharing one database keep it here, so a passkey registered while one node
-- sequenced logs in at the next. Written only by the node that holds the writer epoch.
CREATE TABLE govern_passkeys (
    tenant     text  NOT NULL,
    credential text  NOT NULL,
    state      bytea NOT NULL,
    PRIMARY KEY (tenant, credential)
);
