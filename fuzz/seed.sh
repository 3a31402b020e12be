#!/bin/sh
# Copies the page fixtures into the fuzz corpora (gitignored), so libFuzzer starts from real
# pages instead of from nothing. Run from anywhere; it is idempotent.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
pages="$here/../tests/fixtures/pages"
mkdir -p "$here/corpus/extract" "$here/corpus/lenient_json" "$here/corpus/price_text"

# extract: every page and API body as it is.
for f in "$pages"/*.html "$pages"/*.json; do
    case "$f" in *.expected.json) continue ;; esac
    cp "$f" "$here/corpus/extract/"
done

# lenient_json: each page's JSON-LD scripts, one file per script, plus the API bodies.
for f in "$pages"/*.html; do
    name=$(basename "$f" .html)
    awk -v out="$here/corpus/lenient_json/$name" '
        /<script[^>]*application\/ld\+json/ { n++; inside = 1; sub(/.*<script[^>]*>/, ""); }
        inside {
            line = $0
            done = sub(/<\/script>.*/, "", line)
            print line > (out "-" n ".json")
            if (done) inside = 0
        }
    ' "$f"
done
for f in "$pages"/*.json; do
    case "$f" in *.expected.json) continue ;; esac
    cp "$f" "$here/corpus/lenient_json/"
done

# price_text: the price strings the fixtures expect to read, and a few hand-written ones.
i=0
for s in '1.234,56 €' "CHF 1'049.95" 'Save $200! Now $799' '12,-' '£1,299.00' '¥12,800' \
    'R$ 1.299,90' '1 299,00 zł' 'KWD 1.250' '₹1,23,456' 'from $19.99 to $29.99' '99p' \
    'was 49,99 € now 39,99 €' '2 for $5' '1e5' '-5 €' 'Call for price' '１２，８００円'; do
    i=$((i + 1))
    printf '%s' "$s" > "$here/corpus/price_text/hand-$i"
done
i=0
for hint in EUR de-DE .com.au sv-SE .jp; do
    i=$((i + 1))
    printf '%s\n%s' "$hint" '$1.299' > "$here/corpus/price_text/hint-$i"
done
echo "seeded: $(ls "$here/corpus/extract" | wc -l) extract, $(ls "$here/corpus/lenient_json" | wc -l) lenient_json, $(ls "$here/corpus/price_text" | wc -l) price_text"
