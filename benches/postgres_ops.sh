#!/usr/bin/env bash
# What the operations surface costs on a big PostgreSQL store, through the real binary:
#
#   readyz   GET /readyz and GET /metrics latency with 1,000,000 conversations and watches,
#            right after VACUUM and again after a third of the watches were rewritten (dead
#            tuples, as between two autovacuum runs);
#   import   `pricewatch import` of an export of 100,000 conversations, 100,000 products and
#            200,000 watches into an empty schema.
#
# Usage: benches/postgres_ops.sh readyz|import <pricewatch binary> [<binary> ...]
# Needs psql, curl, awk and GNU time; PW_BENCH_POSTGRES_URL (default
# postgres://postgres@127.0.0.1:5432/test). Each run gets its own schema, dropped at the end.
# Several binaries are measured in turn on the same data (e.g. two builds to compare).
set -euo pipefail

what=${1:?readyz or import}
shift
[ $# -gt 0 ] || { echo "name at least one pricewatch binary" >&2; exit 2; }
url=${PW_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
schema=pw_bench_ops_$$
work=$(mktemp -d)
port=$((20000 + $$ % 20000))
psql_() { psql -q -v ON_ERROR_STOP=1 "$url" "$@"; }
cleanup() {
    psql_ -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

printf '%s\n' "$url" > "$work/postgres-url"
cat > "$work/pricewatch.toml" <<EOF
[server]
bind = "127.0.0.1:$port"
[storage]
path = "$work/data"
backend = "postgres"
postgres_url_file = "$work/postgres-url"
postgres_schema = "$schema"
[schedule]
enabled = false
EOF

# N timed GETs of one path, PAUSE seconds apart: "status:seconds" each.
timed() {
    local path=$1 n=$2 pause=$3 out=()
    for _ in $(seq "$n"); do
        out+=("$(curl -s -o /dev/null -w '%{http_code}:%{time_total}' "http://127.0.0.1:$port$path")")
        sleep "$pause"
    done
    echo "${out[*]}"
}

serve_and_time() {
    local bin=$1 label=$2
    "$bin" serve --config "$work/pricewatch.toml" > "$work/serve.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break
        sleep 0.2
    done
    sleep 2
    echo "$label $bin"
    echo "  /readyz (0.5 s apart):  $(timed /readyz 20 0.5)"
    echo "  /metrics (1 s apart):   $(timed /metrics 10 1)"
    kill -TERM "$pid"
    wait "$pid" || true
}

case $what in
readyz)
    "$1" migrate --config "$work/pricewatch.toml"
    psql_ <<EOF
SET search_path = $schema;
INSERT INTO conversations
SELECT 'msteams', 'conv-' || g,
       jsonb_build_object('serviceUrl', 'https://smba.trafficmanager.net/emea/',
                          'conversation', jsonb_build_object('id', 'conv-' || g))
FROM generate_series(1, 1000000) g;
-- The counts read only the keys: the records need the size of real ones, not their shape.
INSERT INTO watches
SELECT g, 'msteams', 'conv-' || g, 'https://shop' || (g % 100) || '.example/p/' || (g % 100000),
       jsonb_build_object('url', 'https://shop' || (g % 100) || '.example/p/' || (g % 100000),
                          'rule', jsonb_build_object('type', 'drop', 'percent', '20'),
                          'trigger', jsonb_build_object('reference', NULL, 'fired', false),
                          'created_at_ms', 1764000000000)
FROM generate_series(1, 1000000) g;
ALTER TABLE watches SET (autovacuum_enabled = false);
ALTER TABLE conversations SET (autovacuum_enabled = false);
VACUUM ANALYZE;
EOF
    for bin in "$@"; do serve_and_time "$bin" "after VACUUM:"; done
    psql_ <<EOF
SET search_path = $schema;
UPDATE watches SET watch = watch || '{"checked": 1}' WHERE id % 3 = 0;
UPDATE conversations SET reference = reference || '{"x": 1}' WHERE conversation_id LIKE '%7';
EOF
    for bin in "$@"; do serve_and_time "$bin" "a third of the watches rewritten:"; done
    ;;
import)
    n=100000
    awk -v n=$n 'BEGIN {
        print "{\"kind\":\"pricewatch-export\",\"version\":1,\"exported_at\":\"2026-12-06T00:00:00Z\"}"
        nul = "\"name\":null,\"aad_object_id\":null,\"role\":null"
        for (i = 0; i < n; i++)
            printf "{\"kind\":\"conversation\",\"channel_id\":\"msteams\",\"service_url\":\"https://smba.trafficmanager.net/emea/\",\"conversation\":{\"id\":\"conv%d\",\"name\":null,\"is_group\":null,\"conversation_type\":null,\"tenant_id\":null},\"user\":{\"id\":\"user%d\",%s},\"bot\":{\"id\":\"bot\",%s},\"locale\":null,\"unreachable\":null}\n", i, i, nul, nul
        for (i = 0; i < n; i++)
            printf "{\"kind\":\"product\",\"url\":\"https://shop%d.example/p/%d\",\"title\":null,\"next_due_ms\":%.0f,\"etag\":null,\"last_modified\":null,\"failures\":0,\"failing_since_ms\":null,\"notice_sent\":false,\"last_check_ms\":null,\"last_error\":null,\"history\":[]}\n", i % 100, i, 1796520008765 + i
        for (j = 0; j < 2 * n; j++) {
            i = int(j / 2); p = (i + (j % 2) * 7) % n
            printf "{\"kind\":\"watch\",\"id\":%d,\"conversation\":{\"channel_id\":\"msteams\",\"conversation_id\":\"conv%d\"},\"user\":{\"id\":\"user%d\",%s},\"url\":\"https://shop%d.example/p/%d\",\"rule\":{\"type\":\"drop\",\"percent\":\"20\"},\"created_at_ms\":1796520008765,\"trigger\":{\"reference\":null,\"fired\":false,\"below_count\":0,\"mismatch_reported\":false,\"last\":null},\"paused\":false}\n", j, i, i, nul, p % 100, p
        }
    }' > "$work/export.jsonl"
    for bin in "$@"; do
        psql_ -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1
        /usr/bin/time -f "  %e s wall, %U s user, %M KB peak RSS" \
            "$bin" import --config "$work/pricewatch.toml" "$work/export.jsonl" 2>&1 |
            sed "s|^imported|$bin: imported|"
    done
    ;;
*)
    echo "readyz or import, not $what" >&2
    exit 2
    ;;
esac
