-- sinkhole schema, version 1: the query log (one row per answered query, partitioned by
-- day so that retention drops whole partitions), the instances writing to it, and the
-- state that `[sync] postgres = true` shares (local list entries, pause).
-- Applied by `sinkhole db migrate`; each file runs once, in a transaction.

CREATE TABLE queries (
    ts          timestamptz NOT NULL,   -- arrival time
    instance    text        NOT NULL,   -- server.name, or the host name
    client      inet        NOT NULL,   -- address, or network with log.anonymize_clients
    proto       text,                   -- udp, tcp, tls, https, quic
    qname       text        NOT NULL,   -- lower case, no trailing dot
    domain      text        NOT NULL,   -- registrable domain of qname (Public Suffix List)
    qtype       text        NOT NULL,
    action      text        NOT NULL,
    rule        text,
    list        text,
    grp         text,                   -- the log's `group`
    cname       text,
    rcode       text        NOT NULL,
    dnssec      text,
    answers     text[]      NOT NULL,
    tc          boolean     NOT NULL,
    upstream    text,
    elapsed_us  bigint      NOT NULL,
    session     bigint      NOT NULL,   -- per client and instance
    seq         bigint      NOT NULL,
    new         boolean     NOT NULL
) PARTITION BY RANGE (ts);

-- Rows whose day has no partition yet (a clock far off); the writer creates each day's
-- partition before it writes to it, so this stays empty in practice.
CREATE TABLE queries_default PARTITION OF queries DEFAULT;

-- The questions the commands ask: a client's records in time order (`log first
-- --client`, `log tail --client`), a name (`lists check`-style lookups, `--name`), an
-- action over time (blocked counts), and the newest records (`log tail`, the API's page).
CREATE INDEX queries_client_ts ON queries (client, ts);
CREATE INDEX queries_qname ON queries (qname);
CREATE INDEX queries_action_ts ON queries (action, ts);
CREATE INDEX queries_ts ON queries (ts);

-- Every instance that writes, and when it was last seen (a second one with the same name
-- is warned about at start).
CREATE TABLE instances (
    name        text        PRIMARY KEY,
    host        text        NOT NULL,
    pid         integer     NOT NULL,
    started_at  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL
);

-- `[sync] postgres = true`: local block and allow entries (`sinkhole lists add/remove`,
-- the API's list edits), applied by every instance.
CREATE TABLE shared_entries (
    kind        text        NOT NULL CHECK (kind IN ('block', 'allow')),
    name        text        NOT NULL,
    comment     text,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    changed_by  text        NOT NULL,
    PRIMARY KEY (kind, name)
);

-- `[sync] postgres = true`: blocking paused for every instance until `until` (NULL: not
-- paused). One row.
CREATE TABLE shared_pause (
    id          boolean     PRIMARY KEY DEFAULT true CHECK (id),
    until       timestamptz,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    changed_by  text        NOT NULL
);
