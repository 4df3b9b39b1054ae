#!/usr/bin/env bash
# Checks Cargo.lock against the RustSec advisory database and fails on any
# vulnerable or yanked crate (deny.toml's [advisories]).
#
# The database is fetched from GitHub when the machine can reach it. Where it
# cannot, the check runs offline against a snapshot instead, never skipped:
#   1. $TIERGATE_ADVISORY_DB, a plain copy of the database's files;
#   2. ../shared/rustsec-advisory-db beside the checkout, when the machine has one;
#   3. .ci/rustsec-advisory-db.tar.xz, the snapshot kept in the repository.
# The output names the database used and the date of its last commit.
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
work=$(mktemp -d)
trap 'rm -rf "$log" "$work"' EXIT

if cargo deny check advisories 2>&1 | tee "$log"; then
    db=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/advisory-dbs/advisory-db-* 2>/dev/null | head -1)
    echo "advisories: checked against the RustSec database fetched from GitHub" \
        "(last commit $(git -C "$db" log -1 --format=%cI 2>/dev/null || echo unknown))"
    exit 0
fi
if ! grep -q "failed to fetch advisory database" "$log"; then
    echo "advisories: the check failed (above)" >&2
    exit 1
fi

# No route to GitHub: use a snapshot.
snapshot=""
for candidate in "${TIERGATE_ADVISORY_DB:-}" ../shared/rustsec-advisory-db; do
    if [ -n "$candidate" ] && [ -d "$candidate/crates" ]; then
        snapshot=$(cd "$candidate" && pwd)
        break
    fi
done
if [ -z "$snapshot" ]; then
    tar -xJf .ci/rustsec-advisory-db.tar.xz -C "$work"
    snapshot="$work/rustsec-advisory-db"
    source_name=".ci/rustsec-advisory-db.tar.xz"
else
    source_name="$snapshot"
fi
date=$(grep -o 'committed [^ ]*' "$snapshot/SNAPSHOT" | cut -d' ' -f2 | tr -d ',.' || true)
if [ -z "$date" ]; then
    echo "advisories: $snapshot/SNAPSHOT does not say when the snapshot was committed" >&2
    exit 1
fi

# cargo-deny reads the database of its default URL as a git checkout under
# db-path, in a directory named after that URL, and takes its date from the
# checkout's last commit.
db_root="$work/db"
checkout="$db_root/advisory-db-3157b0e258782691"
mkdir -p "$checkout"
cp -r "$snapshot/." "$checkout/"
(
    cd "$checkout"
    git init -q
    git add -A
    GIT_AUTHOR_DATE="$date" GIT_COMMITTER_DATE="$date" \
        git -c user.name=snapshot -c user.email=snapshot@localhost commit -qm "RustSec advisory-db snapshot"
)
# The same deny.toml, pointed at the snapshot.
sed "s|^\[advisories\]$|[advisories]\ndb-path = \"$db_root\"|" deny.toml > "$work/deny.toml"
echo "advisories: GitHub is unreachable; checking offline against the RustSec snapshot" \
    "from $source_name, committed $date"
cargo deny --offline --config "$work/deny.toml" check advisories
