#!/usr/bin/env bash
# The main job: builds s3upfs and mounts the embedded S3 server (--local) in the
# foreground. Ctrl-C unmounts.
#   scripts/demo.sh [DATA_DIR [MOUNTPOINT]]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --locked
# Defaults private to this user: a predictable name in a shared /tmp could be planted by
# someone else (the server also refuses a data directory not its own or open to others).
base="${XDG_RUNTIME_DIR:-}"
[ -n "$base" ] && [ -d "$base" ] && [ -O "$base" ] || base="$(mktemp -d "${TMPDIR:-/tmp}/s3upfs-demo.XXXXXX")"
data_dir="${1:-$base/s3upfs-demo-data}"
mountpoint="${2:-$base/s3upfs-demo}"
mkdir -p -m 700 "$data_dir"
mkdir -p "$mountpoint"
cat <<MSG

s3upfs: mounting the local bucket (data in $data_dir) on $mountpoint.
In another terminal, try:
  cp /etc/services $mountpoint/ && ls -l $mountpoint
  mkdir $mountpoint/empty-dir
  dd if=/dev/urandom of=$mountpoint/big.bin bs=1M count=100
  rsync -a /usr/share/doc/bash/ $mountpoint/backup/
  mv $mountpoint/services $mountpoint/services.txt
The S3 endpoint and its credentials are in $data_dir/.s3upfs-local.env
(e.g.: set -a; . $data_dir/.s3upfs-local.env; aws --endpoint-url \$S3UPFS_ENDPOINT s3 ls s3://s3upfs/).
Ctrl-C unmounts.

MSG
exec target/release/s3upfs mount --local "$data_dir" "$mountpoint" --foreground
