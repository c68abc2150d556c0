#!/usr/bin/env bash
# Runs every test of s3upfs: installs what is missing (fuse3, rsync, Garage, pjdfstest), then
# format and lint checks, unit tests and the integration tests against a real Garage
# server and real FUSE mounts.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
S3UPFS_GARAGE_BIN="$(scripts/install-garage.sh)"
export S3UPFS_GARAGE_BIN
# The POSIX conformance suite tests/pjdfstest.rs runs part of (about 2 minutes once).
S3UPFS_PJDFSTEST_BIN="$(scripts/install-pjdfstest.sh)"
export S3UPFS_PJDFSTEST_BIN
# Build output cached outside the clone (like Garage): a fresh clone on the same machine
# then rebuilds only s3upfs itself, not its ~400 dependencies.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${S3UPFS_CACHE:-$HOME/.cache/s3upfs}/target}"

# The tools the suite relies on drift with security updates (rsync 3.2.7 -> 3.5.0 did):
# say which ones this run used, so a red run names what changed.
echo "== tool versions: $(rsync --version | head -n1)"
echo "==                fuse3 $(dpkg-query -W -f='${Version}' fuse3 2>/dev/null || echo '?'), $(fusermount3 --version 2>&1 | head -n1)"
echo "==                kernel $(uname -r), $("$S3UPFS_GARAGE_BIN" --version 2>/dev/null | head -n1 || echo 'garage ?')"
echo "==                $("$S3UPFS_PJDFSTEST_BIN" --version 2>/dev/null | head -n1 || echo 'pjdfstest ?')"
echo "==                $(getfattr --version 2>/dev/null | head -n1 || echo 'getfattr ?')"
echo "==                $(rustc --version), $(cargo nextest --version 2>/dev/null | head -n1)"

# --workspace: the root package and the embedded server's crate (local/) alike.
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Two cores: mounts and servers run beside the tests, so keep the test threads low.
cargo nextest run --workspace --locked --no-fail-fast --test-threads 2 "$@"
# The benchmark harness, once and small, so it cannot rot (its figures are not checked).
scripts/bench.sh --quick --profile dev
