#!/usr/bin/env bash
# Installs pjdfstest 0.2.2 (the Rust port of the classic POSIX file system conformance
# suite; tests/pjdfstest.rs runs part of it on a mount) once, into a cache directory outside
# the repository, and prints the binary's path.
set -euo pipefail
version=0.2.2
cache_root="${S3UPFS_CACHE:-$HOME/.cache/s3upfs}"
root="$cache_root/pjdfstest-$version"
bin="$root/bin/pjdfstest"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
# Its ACL dependency (exacl) links against libacl.
"$(dirname "$0")/install-deps.sh" libacl1-dev
mkdir -p "$root"
echo "installing pjdfstest $version into $root (about 2 minutes on 2 cores)..." >&2
# A private target dir keeps the build out of the repository and lets a retry reuse it.
CARGO_TARGET_DIR="$cache_root/pjdfstest-build" \
  cargo install "pjdfstest@$version" --locked --root "$root" >&2
rm -rf "$cache_root/pjdfstest-build"
echo "$bin"
