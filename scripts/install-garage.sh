#!/usr/bin/env bash
# Installs Garage 2.5.0 (the S3 server the tests and benchmarks run against) once,
# into a cache directory outside the repository, and prints the binary's path.
# Garage is AGPL: it is only ever run as a separate process, never linked.
set -euo pipefail
version=2.5.0
cache_root="${S3UPFS_CACHE:-$HOME/.cache/s3upfs}"
root="$cache_root/garage-$version"
bin="$root/bin/garage"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$root"
echo "installing garage $version into $root (about 17 minutes on 2 cores)..." >&2
# A private target dir keeps the build out of the repository and lets a retry reuse it.
CARGO_TARGET_DIR="$cache_root/garage-build" \
  cargo install "garage@$version" --locked --root "$root" >&2
rm -rf "$cache_root/garage-build"
echo "$bin"
