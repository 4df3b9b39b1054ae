//! The PostgreSQL schema, as versioned migrations.
//!
//! The tables mirror the SQLite store's. Names and ids that are sorted are
//! `COLLATE "C"`, so every replica (and SQLite) sorts them byte by byte,
//! whatever the database's locale. Amounts are exact decimal text, summed
//! in Rust.

use crate::pool::Conn;
use crate::pool::pg;
use tiergate_core::store::StoreError;

/// Applied in order; `tiergate_schema` records each one applied.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE authorizations (
    tenant          TEXT COLLATE "C" NOT NULL,
    tx_id           TEXT COLLATE "C" NOT NULL,
    content_hash    TEXT    NOT NULL,
    agent           TEXT COLLATE "C" NOT NULL,
    team            TEXT COLLATE "C",
    recipient       TEXT COLLATE "C" NOT NULL,
    category        TEXT    NOT NULL,
    currency        TEXT    NOT NULL,
    amount          TEXT    NOT NULL,
    tier            TEXT    NOT NULL,
    requested_at_ms BIGINT  NOT NULL,
    status          TEXT    NOT NULL,
    holds           BOOLEAN NOT NULL,
    deadline_ms     BIGINT,
    body            TEXT    NOT NULL,
    PRIMARY KEY (tenant, tx_id)
);
CREATE INDEX authorizations_by_agent ON authorizations (tenant, agent, requested_at_ms);
CREATE INDEX authorizations_holding ON authorizations (tenant, holds, requested_at_ms);
CREATE INDEX authorizations_due ON authorizations (deadline_ms) WHERE deadline_ms IS NOT NULL;
CREATE INDEX authorizations_in_order ON authorizations (tenant, requested_at_ms, tx_id);

CREATE TABLE audit_events (
    tenant          TEXT COLLATE "C" NOT NULL,
    seq             BIGINT  NOT NULL,
    audit_id        TEXT    NOT NULL,
    tx_id           TEXT COLLATE "C" NOT NULL,
    kind            TEXT    NOT NULL,
    actor           TEXT,
    at_ms           BIGINT  NOT NULL,
    detail          TEXT    NOT NULL,
    prev_hash       TEXT    NOT NULL,
    hash            TEXT    NOT NULL,
    retain_until_ms BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, seq)
);
CREATE INDEX audit_events_by_tx ON audit_events (tenant, tx_id);
CREATE INDEX audit_events_by_kind ON audit_events (tenant, kind, seq);
CREATE FUNCTION tiergate_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only';
END
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION tiergate_audit_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION tiergate_audit_append_only();

CREATE TABLE audit_days (
    tenant TEXT COLLATE "C" NOT NULL,
    day    TEXT   NOT NULL,
    next   BIGINT NOT NULL,
    PRIMARY KEY (tenant, day)
);

CREATE TABLE outbox (
    id           BIGSERIAL PRIMARY KEY,
    tenant       TEXT COLLATE "C" NOT NULL,
    tx_id        TEXT COLLATE "C" NOT NULL,
    kind         TEXT   NOT NULL,
    recipient    TEXT   NOT NULL,
    message      TEXT   NOT NULL,
    created_ms   BIGINT NOT NULL,
    delivered_ms BIGINT
);
CREATE INDEX outbox_by_tenant ON outbox (tenant, id);

CREATE TABLE ledger (
    tenant      TEXT COLLATE "C" NOT NULL,
    tx_id       TEXT COLLATE "C" NOT NULL,
    amount      TEXT   NOT NULL,
    currency    TEXT   NOT NULL,
    recipient   TEXT COLLATE "C" NOT NULL,
    executed_ms BIGINT NOT NULL,
    reference   TEXT   NOT NULL,
    PRIMARY KEY (tenant, tx_id)
);
CREATE INDEX ledger_by_recipient ON ledger (tenant, recipient);

CREATE TABLE api_keys (
    key_id      TEXT COLLATE "C" PRIMARY KEY,
    tenant      TEXT COLLATE "C" NOT NULL,
    role        TEXT   NOT NULL,
    subject     TEXT   NOT NULL,
    secret_hash TEXT   NOT NULL,
    created_ms  BIGINT NOT NULL,
    revoked_ms  BIGINT
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant);

CREATE TABLE policies (
    digest      TEXT   PRIMARY KEY,
    component   BYTEA  NOT NULL,
    uploaded_ms BIGINT NOT NULL
);

CREATE TABLE tenant_rules (
    tenant       TEXT COLLATE "C" NOT NULL,
    version      BIGINT NOT NULL,
    policy       TEXT   NOT NULL,
    config       TEXT   NOT NULL,
    activated_ms BIGINT NOT NULL,
    actor        TEXT   NOT NULL,
    PRIMARY KEY (tenant, version)
);

CREATE TABLE deliveries (
    outbox_id       BIGINT NOT NULL,
    url             TEXT COLLATE "C" NOT NULL,
    tenant          TEXT COLLATE "C" NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    delivered_ms    BIGINT,
    gave_up_ms      BIGINT,
    last_error      TEXT,
    PRIMARY KEY (outbox_id, url)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_ms)
    WHERE delivered_ms IS NULL AND gave_up_ms IS NULL;
CREATE INDEX deliveries_by_tenant ON deliveries (tenant, url, outbox_id);

CREATE TABLE delivery_cursors (
    tenant   TEXT COLLATE "C" NOT NULL,
    url      TEXT COLLATE "C" NOT NULL,
    after_id BIGINT NOT NULL,
    PRIMARY KEY (tenant, url)
);

CREATE TABLE holdings (
    tenant   TEXT COLLATE "C" NOT NULL,
    scope    TEXT   NOT NULL,
    name     TEXT COLLATE "C" NOT NULL,
    currency TEXT   NOT NULL,
    hour     BIGINT NOT NULL,
    amount   TEXT   NOT NULL,
    PRIMARY KEY (tenant, scope, name, currency, hour)
);
CREATE TABLE recipients (
    tenant        TEXT COLLATE "C" NOT NULL,
    recipient     TEXT COLLATE "C" NOT NULL,
    first_paid_ms BIGINT NOT NULL,
    payments      BIGINT NOT NULL,
    PRIMARY KEY (tenant, recipient)
);
"#,
    // A payment found by its audit id (`audit show`) without reading every
    // record.
    r#"
ALTER TABLE authorizations ADD COLUMN audit_id TEXT COLLATE "C";
UPDATE authorizations SET audit_id = body::jsonb ->> 'audit_id';
CREATE INDEX authorizations_by_audit_id ON authorizations (tenant, audit_id);
"#,
    // Fewer indexes to write per payment: only tenant-level events (no
    // payment) are looked up by kind, the hour a budget window cuts is read
    // through `authorizations_in_order`, and nothing looks the ledger up by
    // recipient (`recipients` has the totals).
    r#"
DROP INDEX audit_events_by_kind;
CREATE INDEX audit_events_of_tenant ON audit_events (tenant, kind, seq) WHERE tx_id = '';
DROP INDEX authorizations_holding;
DROP INDEX ledger_by_recipient;
"#,
    // Each tenant's webhooks with the secrets the service generated for
    // them; uploads owned by the tenant that made them. Uploads named by a
    // tenant's rules become that tenant's; the others, which no tenant can
    // be shown to own, stay in `policies`, used by none. Running it again
    // changes nothing.
    r#"
CREATE TABLE IF NOT EXISTS webhooks (
    tenant              TEXT COLLATE "C" NOT NULL,
    id                  TEXT COLLATE "C" NOT NULL,
    url                 TEXT COLLATE "C" NOT NULL,
    secret              TEXT   NOT NULL,
    previous_secret     TEXT,
    previous_expires_ms BIGINT,
    created_ms          BIGINT NOT NULL,
    rotated_ms          BIGINT,
    PRIMARY KEY (tenant, id),
    UNIQUE (tenant, url)
);

CREATE TABLE IF NOT EXISTS tenant_policies (
    tenant      TEXT COLLATE "C" NOT NULL,
    digest      TEXT COLLATE "C" NOT NULL,
    name        TEXT,
    version     TEXT,
    bytes       BIGINT NOT NULL,
    uploaded_ms BIGINT NOT NULL,
    component   BYTEA  NOT NULL,
    PRIMARY KEY (tenant, digest)
);
INSERT INTO tenant_policies (tenant, digest, bytes, uploaded_ms, component)
    SELECT r.tenant, p.digest, length(p.component), p.uploaded_ms, p.component
    FROM policies p JOIN (SELECT DISTINCT tenant, policy FROM tenant_rules) r
      ON r.policy = p.digest
ON CONFLICT DO NOTHING;
DELETE FROM policies WHERE digest IN (SELECT policy FROM tenant_rules);
"#,
    // Listings page through an index: by status, and an agent key's own
    // payments by the key that submitted them. Payments waiting on an owner
    // are counted as they start and stop waiting, for `/metrics`.
    r#"
ALTER TABLE authorizations ADD COLUMN caller TEXT COLLATE "C";
UPDATE authorizations SET caller = body::jsonb ->> 'caller';
CREATE INDEX authorizations_by_status ON authorizations (tenant, status, requested_at_ms, tx_id);
CREATE INDEX authorizations_by_caller ON authorizations (tenant, caller, status, requested_at_ms, tx_id)
    WHERE caller IS NOT NULL;
CREATE TABLE waiting (
    tenant TEXT COLLATE "C" NOT NULL,
    status TEXT   NOT NULL,
    n      BIGINT NOT NULL,
    PRIMARY KEY (tenant, status)
);
INSERT INTO waiting (tenant, status, n)
    SELECT tenant, status, COUNT(*) FROM authorizations
    WHERE status IN ('pending_veto', 'awaiting_approval') GROUP BY tenant, status;
"#,
    // Deliveries page through an index, in order or by state (a column
    // PostgreSQL computes from the row, so every write keeps it). Those in
    // trouble are counted per tenant as they change state, in the statement
    // that changes it, for `/metrics`; existing ones are counted here. A
    // statement's changes are summed first and applied in key order, so two
    // statements never take the counts' row locks in opposite orders.
    r#"
ALTER TABLE deliveries ADD COLUMN state TEXT COLLATE "C" GENERATED ALWAYS AS (
    CASE WHEN delivered_ms IS NOT NULL THEN 'delivered'
         WHEN gave_up_ms IS NOT NULL THEN 'given_up'
         WHEN attempts > 0 THEN 'failing'
         ELSE 'pending' END) STORED;
CREATE INDEX deliveries_by_state ON deliveries (tenant, state, outbox_id, url);
CREATE INDEX deliveries_in_order ON deliveries (tenant, outbox_id, url);
CREATE TABLE delivery_trouble (
    tenant TEXT COLLATE "C" NOT NULL,
    state  TEXT   NOT NULL,
    n      BIGINT NOT NULL,
    PRIMARY KEY (tenant, state)
);
INSERT INTO delivery_trouble (tenant, state, n)
    SELECT tenant, state, COUNT(*) FROM deliveries
    WHERE state IN ('failing', 'given_up') GROUP BY tenant, state;
CREATE FUNCTION deliveries_count_trouble() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO delivery_trouble (tenant, state, n)
            SELECT tenant, state, COUNT(*) FROM new_rows
            WHERE state IN ('failing', 'given_up')
            GROUP BY tenant, state ORDER BY tenant, state
            ON CONFLICT (tenant, state) DO UPDATE SET n = delivery_trouble.n + EXCLUDED.n;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO delivery_trouble (tenant, state, n)
            SELECT tenant, state, SUM(change) FROM (
                SELECT tenant, state, 1 AS change FROM new_rows
                UNION ALL
                SELECT tenant, state, -1 AS change FROM old_rows
            ) c
            WHERE state IN ('failing', 'given_up')
            GROUP BY tenant, state HAVING SUM(change) <> 0 ORDER BY tenant, state
            ON CONFLICT (tenant, state) DO UPDATE SET n = delivery_trouble.n + EXCLUDED.n;
    ELSE
        INSERT INTO delivery_trouble (tenant, state, n)
            SELECT tenant, state, -COUNT(*) FROM old_rows
            WHERE state IN ('failing', 'given_up')
            GROUP BY tenant, state ORDER BY tenant, state
            ON CONFLICT (tenant, state) DO UPDATE SET n = delivery_trouble.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER deliveries_trouble_insert AFTER INSERT ON deliveries
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deliveries_count_trouble();
CREATE TRIGGER deliveries_trouble_update AFTER UPDATE ON deliveries
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deliveries_count_trouble();
CREATE TRIGGER deliveries_trouble_delete AFTER DELETE ON deliveries
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deliveries_count_trouble();
"#,
    // An agent key that could pay as any agent (`*`) is a platform key:
    // agent keys are bound to one agent.
    "UPDATE api_keys SET role = 'platform' WHERE role = 'agent' AND subject = '*'",
    // Tenants over several databases (see `directory`): each database's
    // identity and, once it joins a set, its number there; the directory
    // (the first database of a set) lists the set and each tenant's home.
    // Running it again changes nothing.
    r#"
CREATE TABLE IF NOT EXISTS tiergate_identity (
    only_row BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    identity TEXT    NOT NULL,
    number   INTEGER
);
INSERT INTO tiergate_identity (identity)
    SELECT gen_random_uuid()::text WHERE NOT EXISTS (SELECT 1 FROM tiergate_identity);
CREATE TABLE IF NOT EXISTS tiergate_databases (
    number    INTEGER PRIMARY KEY,
    identity  TEXT   NOT NULL UNIQUE,
    tenants   BIGINT NOT NULL DEFAULT 0,
    joined_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS tenant_homes (
    tenant    TEXT COLLATE "C" PRIMARY KEY,
    number    INTEGER NOT NULL,
    placed_ms BIGINT  NOT NULL
);
"#,
    // A tenant moving off this database or onto it (see `moving`): every
    // write under the tenant's lock checks first, and is refused with
    // SQLSTATE TGMOV while the tenant is not (yet, or any more) here. The
    // rows of a tenant that moved away may be deleted, audit events
    // included (they are on the other database, checked equal, first), as
    // may those of a copy that never opened for writes. Running it again
    // changes nothing.
    r#"
CREATE TABLE IF NOT EXISTS tenant_moves (
    tenant    TEXT COLLATE "C" PRIMARY KEY,
    direction TEXT    NOT NULL CHECK (direction IN ('leaving', 'arriving')),
    other     INTEGER NOT NULL,
    until_ms  BIGINT
);
CREATE OR REPLACE FUNCTION tiergate_tenant_here(t TEXT) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    m tenant_moves%ROWTYPE;
BEGIN
    SELECT * INTO m FROM tenant_moves WHERE tenant = t;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF m.direction = 'leaving' THEN
        RAISE EXCEPTION 'tenant % has moved to database % of the store', t, m.other
            USING ERRCODE = 'TGMOV';
    END IF;
    IF m.until_ms IS NULL
       OR m.until_ms > (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT THEN
        RAISE EXCEPTION 'tenant % is moving here from database % of the store; retry shortly', t, m.other
            USING ERRCODE = 'TGMOV';
    END IF;
END
$$;
CREATE OR REPLACE FUNCTION tiergate_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (
        SELECT 1 FROM tenant_moves
        WHERE tenant = OLD.tenant AND (direction = 'leaving' OR until_ms IS NULL)
    ) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit events are append-only';
END
$$;
"#,
];

/// Brings the schema up to date. Every replica runs this on start; the
/// advisory lock makes the second wait for the first and then find
/// nothing left to do.
pub(super) fn migrate(conn: &mut Conn) -> Result<(), StoreError> {
    conn.begin()?;
    // The two-key form: its key space is apart from the tenants' locks.
    conn.execute("SELECT pg_advisory_xact_lock(7467, 1)", &[])?;
    conn.batch(
        "CREATE TABLE IF NOT EXISTS tiergate_schema (
             version    INTEGER PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )?;
    let version: i32 = conn
        .query_one("SELECT COALESCE(MAX(version), 0) FROM tiergate_schema", &[])?
        .try_get(0)
        .map_err(pg)?;
    let version = version as usize;
    if version > MIGRATIONS.len() {
        return Err(StoreError::unusable(format!(
            "its schema version {version} is newer than this tiergate understands ({}); upgrade tiergate",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        conn.batch(sql)?;
        conn.execute(
            "INSERT INTO tiergate_schema (version) VALUES ($1)",
            &[&((i + 1) as i32)],
        )?;
    }
    conn.commit()
}
