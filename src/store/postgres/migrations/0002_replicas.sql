-- Version 2: what replicas sharing the database need to split the work.
--
-- Times in these columns are the database server's clock (`clock_timestamp()` in ms),
-- never a replica's: replicas on machines whose clocks disagree still agree on when a
-- lease runs out.

-- Named leases: "host:<host>" (the replica that fetches a shop's pages) and
-- "deliver:<channel id>" (the replica that sends a channel's messages). A row whose
-- until_ms has passed is free; its holder renews it well before then.
CREATE TABLE leases (
    name     text   PRIMARY KEY,
    holder   text   NOT NULL,
    until_ms bigint NOT NULL
);

-- The host of a product's URL, as `ProductUrl::host` gives it (the url crate's host_str:
-- a name, an IPv4 address, or an IPv6 one in brackets), so that the due query can leave
-- out the hosts another replica is fetching.
ALTER TABLE products ADD COLUMN host text NOT NULL
    GENERATED ALWAYS AS (substring(url from '^[^:]+://(?:[^@/]*@)?(\[[^\]]*\]|[^:/?#]*)')) STORED;

-- A product a replica is checking, until its claim runs out; `record_check` clears it.
ALTER TABLE products ADD COLUMN claimed_by text;
ALTER TABLE products ADD COLUMN claimed_until_ms bigint;

-- A queued message a replica's delivery pass has taken, until its claim runs out.
ALTER TABLE outbox ADD COLUMN claimed_by text;
ALTER TABLE outbox ADD COLUMN claimed_until_ms bigint;
CREATE INDEX outbox_due_by_channel ON outbox (channel_id, next_attempt_ms) WHERE dead_ms IS NULL;

-- What a stopping replica gives back (`Replicas::release`), found without a scan.
CREATE INDEX products_claimed ON products (claimed_by) WHERE claimed_by IS NOT NULL;
CREATE INDEX outbox_claimed ON outbox (claimed_by) WHERE claimed_by IS NOT NULL;
