-- pricewatch's PostgreSQL schema, version 1: what the sled backend keeps in its trees,
-- as tables. Records are the domain values as JSON (jsonb), as the sled backend encodes
-- them; the columns beside them are the keys and the times the queries select on.
-- Names are unqualified: the connection's search_path decides the schema.

CREATE TABLE conversations (
    channel_id      text  NOT NULL,
    conversation_id text  NOT NULL,
    reference       jsonb NOT NULL,
    PRIMARY KEY (channel_id, conversation_id)
);

-- A conversation the channel refused (403/404), apart from its reference as in sled.
CREATE TABLE unreachable (
    channel_id      text  NOT NULL,
    conversation_id text  NOT NULL,
    mark            jsonb NOT NULL,
    PRIMARY KEY (channel_id, conversation_id)
);

-- Watch ids grow with creation time, so that a conversation lists its watches in order.
-- From 0, as sled's generated ids: a store moved between the backends keeps its numbers.
CREATE SEQUENCE watch_ids MINVALUE 0 START WITH 0;

CREATE TABLE watches (
    id              bigint PRIMARY KEY,
    channel_id      text   NOT NULL,
    conversation_id text   NOT NULL,
    url             text   NOT NULL,
    watch           jsonb  NOT NULL
);
CREATE INDEX watches_by_conversation ON watches (channel_id, conversation_id, id);
CREATE INDEX watches_by_url ON watches (url, id);

CREATE TABLE products (
    url         text   PRIMARY KEY,
    next_due_ms bigint NOT NULL,
    product     jsonb  NOT NULL
);
CREATE INDEX products_by_due ON products (next_due_ms, url);

CREATE TABLE history (
    url   text   NOT NULL,
    at_ms bigint NOT NULL,
    point jsonb  NOT NULL,
    PRIMARY KEY (url, at_ms)
);
CREATE INDEX history_by_time ON history (at_ms);

-- Outbox ids give the queue order.
CREATE SEQUENCE outbox_ids MINVALUE 0 START WITH 0;

-- Queued messages and dead letters (dead_ms set). An alert id is kept once while its
-- message is queued (a check retried after a crash queues it again).
CREATE TABLE outbox (
    id              bigint PRIMARY KEY,
    alert_id        text   NOT NULL,
    channel_id      text   NOT NULL,
    conversation_id text   NOT NULL,
    next_attempt_ms bigint NOT NULL,
    dead_ms         bigint,
    entry           jsonb  NOT NULL
);
CREATE UNIQUE INDEX outbox_alert_ids ON outbox (alert_id) WHERE dead_ms IS NULL;
CREATE INDEX outbox_due ON outbox (next_attempt_ms, id) WHERE dead_ms IS NULL;
CREATE INDEX outbox_dead ON outbox (id) WHERE dead_ms IS NOT NULL;
CREATE INDEX outbox_by_conversation ON outbox (channel_id, conversation_id, id);
