#!/usr/bin/env bash
# Benchmarks s3upfs against the raw aws-sdk-s3 baseline, s3fs-fuse, rclone mount and the
# AWS CLI, all writing into one local Garage 2.5.0 bucket (each contestant under its own key
# prefix).
#
# Usage: scripts/bench.sh [--quick] [--size SIZE] [--repeat N] [--only LIST] [--workloads LIST]
#                        [--no-build] [--profile P] [--files N]
#   --quick      small sizes, one repeat, no 4 GiB file, 1,000 files (under 3 minutes once built)
#   --size SIZE  the large file (default 1GiB; 64MiB with --quick), e.g. 512MiB, 2GiB
#   --repeat N   runs per measurement (default 3; 1 with --quick); the table shows median (min–max)
#   --only LIST  comma-separated contestants: raw,s3upfs,s3fs,rclone-off,rclone-writes,aws-cli
#   --workloads LIST  comma-separated: large,parallel,small,scale,files,resume,verify (default: all)
#   --files N    how many files the files workload copies (default 200000; 1000 with --quick)
#   --no-build   use the binaries already built (cargo's target dir)
#   --profile P  cargo profile to build and run (default release; the test suite's smoke run
#                uses dev so it needs no second full build — its figures mean nothing)
#
# Environment: S3UPFS_BENCH_CONCURRENCY (uploads in flight, default 8), S3UPFS_BENCH_BIN (the
# s3upfs binary to measure, e.g. an older build for an A/B comparison), S3UPFS_BENCH_TMPDIR,
# S3UPFS_BENCH_KEEP=1 (keep the temp dir), S3UPFS_BENCH_GARAGE_LOG (Garage's RUST_LOG).
#
# Writes bench/results/<date>[-quick].md (the tables, also printed) and a .png chart beside
# it. Everything it starts (Garage, daemons) and mounts is stopped and unmounted on exit,
# failure or Ctrl-C; its temp dir (S3UPFS_BENCH_TMPDIR, default /tmp) is removed unless
# S3UPFS_BENCH_KEEP=1.
#
# Workloads (each contestant gets a fresh mount per workload, so CPU and peak RSS are the
# workload's own):
#   large     cp of one random file; MiB/s until the object exists with its full size
#   parallel  8 concurrent cp of 256 MiB files
#   small     rsync -a of 1,000 × 16 KiB files in 20 dirs; files/s, S3 requests per file,
#             then a second rsync -a --stats that should transfer 0 files
#             (aws-cli: aws s3 sync, twice; raw: its own parallel PutObjects)
#   scale     s3upfs only: cp of 256 MiB, 1 GiB, 4 GiB; the daemon's peak RSS must stay
#             within --max-memory + 64 MiB whatever the size
#   files     s3upfs, one run on a fresh Garage: cp -r of 200,000 × 4 KiB files in 100
#             directories (one cp -r per directory, in turn, each timed until its objects are
#             listed), then find -type f | xargs stat on the mount; the daemon's peak RSS must
#             stay under 100 MiB and the last 10% of files must go as fast as the first 10%
#             (≥ 0.9×). raw: the same files as PutObjects one at a time, on its own fresh
#             Garage, for the server's curve (no stat)
#   resume    s3upfs only: a plain cp of the large file, then the same cp with the daemon
#             SIGKILLed once S3 has acknowledged 70% of it (`s3upfs status`), a remount and
#             the cp again: the bytes the second cp sent and its time against the plain cp
#   verify    s3upfs only: the small files and the large file copied in, then
#             `s3upfs verify` of each against the bucket, and `rsync -a --checksum
#             --dry-run` of each through the mount: time, S3 requests and bytes read
#
# Contestants without a mount (raw, aws-cli) report their own process's CPU and peak RSS
# (aws-cli through GNU time; 8 parallel aws processes are summed).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

MiB=$((1 << 20))
GiB=$((1 << 30))

# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------

quick=0
size_arg=""
repeat_arg=""
only="raw,s3upfs,s3fs,rclone-off,rclone-writes,aws-cli"
workloads="large,parallel,small,scale,files,resume,verify"
files_arg=""
build=1
profile=release

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# "1GiB", "64M", "512k" or bytes -> bytes.
parse_size() {
  local text=$1 number unit
  number=${text%%[!0-9]*}
  unit=${text#"$number"}
  [ -n "$number" ] || { echo "bad size: $text" >&2; return 1; }
  case "${unit,,}" in
    "" | b) echo "$number" ;;
    k | kb | kib) echo $((number << 10)) ;;
    m | mb | mib) echo $((number << 20)) ;;
    g | gb | gib) echo $((number << 30)) ;;
    *) echo "bad size: $text" >&2; return 1 ;;
  esac
}

while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --size) size_arg=$(parse_size "${2:?--size needs a value}"); shift ;;
    --repeat) repeat_arg=${2:?--repeat needs a value}; shift ;;
    --only) only=${2:?--only needs a value}; shift ;;
    --workloads) workloads=${2:?--workloads needs a value}; shift ;;
    --no-build) build=0 ;;
    --profile) profile=${2:?--profile needs a value}; shift ;;
    --files) files_arg=${2:?--files needs a value}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

if [ "$quick" = 1 ]; then
  large_size=${size_arg:-$((64 * MiB))}
  repeat=${repeat_arg:-1}
  parallel_size=$((32 * MiB)) # 8 writers; 256 MiB each would take minutes per contestant here
  small_count=100
  scale_sizes=($((256 * MiB)) $((1 * GiB)))
  files_count=${files_arg:-1000}
else
  large_size=${size_arg:-$((1 * GiB))}
  repeat=${repeat_arg:-3}
  parallel_size=$((256 * MiB))
  small_count=1000
  scale_sizes=($((256 * MiB)) $((1 * GiB)) $((4 * GiB)))
  files_count=${files_arg:-200000}
fi
parallel_writers=8
quick_suffix=""
[ "$quick" = 0 ] || quick_suffix=-quick
small_size=$((16 << 10))
small_dirs=20
files_size=$((4 << 10))
files_dirs=100   # one cp -r each, in turn: the first and last 10% of files are 10 directories
files_rss_target_mib=100
IFS=, read -r -a contestants <<<"$only"
for c in "${contestants[@]}"; do
  case "$c" in
    raw | s3upfs | s3fs | rclone-off | rclone-writes | aws-cli) ;;
    *) echo "unknown contestant: $c" >&2; exit 2 ;;
  esac
done
has_contestant() { [[ " ${contestants[*]} " == *" $1 "* ]]; }
IFS=, read -r -a selected_workloads <<<"$workloads"
for w in "${selected_workloads[@]}"; do
  case "$w" in
    large | parallel | small | scale | files | resume | verify) ;;
    *) echo "unknown workload: $w" >&2; exit 2 ;;
  esac
done
has_workload() { [[ " ${selected_workloads[*]} " == *" $1 "* ]]; }
[[ "$repeat" =~ ^[1-9][0-9]*$ ]] || { echo "--repeat needs a positive number" >&2; exit 2; }
# The files workload's contestants: s3upfs, and the raw SDK as the server's baseline.
files_contestants=()
if has_workload files; then
  for c in s3upfs raw; do
    ! has_contestant "$c" || files_contestants+=("$c")
  done
fi
if ! [[ "$files_count" =~ ^[1-9][0-9]*$ ]] || [ "$files_count" -lt "$files_dirs" ]; then
  echo "--files needs a number ≥ $files_dirs" >&2
  exit 2
fi

# Same part size and concurrency for everyone: the comparison is about the data path.
part_mib=8
concurrency=${S3UPFS_BENCH_CONCURRENCY:-8} # uploads in flight, for every contestant alike
max_memory_mib=2048                        # s3upfs --max-memory; the scale verdict uses it

# ---------------------------------------------------------------------------------------------
# Logging, temp dir, cleanup
# ---------------------------------------------------------------------------------------------

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

mib() { awk -v b="$1" 'BEGIN { printf "%g", b / 1048576 }'; }

work=$(mktemp -d "${S3UPFS_BENCH_TMPDIR:-/tmp}/s3upfs-bench.XXXXXX")
state=$work/state # what cleanup must undo, written as things start (also from subshells)
mkdir -p "$state" "$work/src" "$work/mnt" "$work/logs"
: >"$state/pids"
: >"$state/mounts"
records=$work/records.tsv # workload, contestant, field, value: one measurement per line
: >"$records"

# Whether a path is a mount in the kernel's table. Unlike mountpoint(1) this never touches
# the filesystem, so it cannot hang on a daemon that does not answer.
is_mounted() { awk -v m="$1" '$2 == m { found = 1 } END { exit !found }' /proc/mounts; }

# Unmounts without looking at the filesystem (-c: no path canonicalisation, which would stat
# it). A mount still busy or whose daemon hangs is detached lazily.
detach_mount() {
  is_mounted "$1" || return 0
  timeout -s KILL 30 umount -c "$1" 2>/dev/null || umount -c -l "$1" 2>/dev/null || true
}

# Unmounts everything recorded in $state/mounts and stops every recorded process except
# Garage (or Garage too with "all"). Safe to call repeatedly.
release() {
  local scope=${1:-daemons} mnt pid name
  while read -r mnt; do
    [ -z "$mnt" ] || detach_mount "$mnt"
  done < <(tac "$state/mounts" 2>/dev/null)
  while read -r pid name; do
    [ -n "$pid" ] || continue
    [ "$name" != garage ] || [ "$scope" = all ] || continue
    stop_pid "$pid"
  done < <(tac "$state/pids" 2>/dev/null)
}

# Kills a process and all its descendants (found through /proc, by parent pid).
kill_tree() {
  local pid=$1 child
  for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do kill_tree "$child"; done
  kill -TERM "$pid" 2>/dev/null || true
}

# Waits up to 30 s for a process to exit (an unmounted daemon ends by itself), then signals it.
stop_pid() {
  local pid=$1 i
  for i in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || return 0
    [ "$i" != 100 ] || kill -TERM "$pid" 2>/dev/null || true
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup_done=0
pair_pid=""
cleanup() {
  [ "$cleanup_done" = 0 ] || return 0
  cleanup_done=1
  # A workload still running (interrupted): stop its commands before unmounting under them.
  [ -z "$pair_pid" ] || kill_tree "$pair_pid"
  release all
  if [ "${S3UPFS_BENCH_KEEP:-0}" = 1 ]; then
    log "keeping $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# Setup: packages, binaries, Garage, source data
# ---------------------------------------------------------------------------------------------

install_tools() {
  log "checking packages (fuse3 rsync s3fs rclone gnuplot-nox openssl curl time)"
  scripts/install-deps.sh s3fs rclone gnuplot-nox openssl curl time
  if has_contestant aws-cli && ! python3 -c 'import awscli' 2>/dev/null; then
    log "installing the AWS CLI (PyPI awscli)"
    python3 -m pip install --quiet --disable-pip-version-check awscli >&2
  fi
  garage_bin=$(scripts/install-garage.sh)
  if [ "$build" = 1 ]; then
    log "building $profile binaries (cargo build --profile $profile --bins --examples)"
    cargo build --profile "$profile" --bins --examples --quiet
  fi
  # Wherever cargo puts them (CARGO_TARGET_DIR, .cargo/config): ask cargo.
  local target
  target=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  target=${target:-$repo/target}
  local dir=$profile
  [ "$dir" != dev ] || dir=debug
  s3upfs_bin=${S3UPFS_BENCH_BIN:-$target/$dir/s3upfs}
  raw_bin=$target/$dir/examples/raw_upload
  [ -x "$s3upfs_bin" ] && [ -x "$raw_bin" ] || die "$profile binaries missing in $target/$dir (drop --no-build)"
}

# The raw example doubles as the S3 probe (head/wait/count/get): no aws CLI needed.
raw() { "$raw_bin" "$@"; }

# Contestants that upload by themselves, without a filesystem to mount.
is_client() { [ "$1" = raw ] || [ "$1" = aws-cli ]; }

# The AWS CLI as the contestant runs it (python -m: no PATH or pyenv shim needed), with the
# same part size and concurrency as everyone; its config file is written by start_garage.
aws_cli=(python3 -m awscli)

# Runs a command under GNU time, which appends "cpu=USER+SYS rss_kib=KIB" to FILE.
timed_command() {
  local file=$1
  shift
  /usr/bin/time -a -o "$file" -f 'cpu=%U+%S rss_kib=%M' "$@"
}

# Sums what timed_command wrote: "CPU_SECONDS RSS_KIB" (parallel processes add up).
timed_totals() {
  sed -n 's/^cpu=\([0-9.]*\)+\([0-9.]*\) rss_kib=\([0-9]*\)$/\1 \2 \3/p' "$1" |
    awk '{ cpu += $1 + $2; rss += $3 } END { printf "%.2f %d\n", cpu, rss }'
}

# A TCP port nobody listens on (Garage gets three; a clash is retried in start_garage).
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
}

garage_version() { "$garage_bin" --version 2>/dev/null | head -1 | awk '{ sub(/.*:/, "", $2); print $2 }'; }

hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

start_garage() {
  local dir=$work/garage attempt
  export AWS_ACCESS_KEY_ID="GK$(hex 12)" AWS_SECRET_ACCESS_KEY=$(hex 32) AWS_REGION=garage
  export S3_BUCKET=s3upfs-bench
  unset AWS_CA_BUNDLE AWS_PROFILE AWS_SESSION_TOKEN # rclone 1.60 refuses to start with AWS_CA_BUNDLE set
  admin_token=$(hex 32)
  for attempt in 1 2 3; do
    rm -rf "$dir" && mkdir -p "$dir"
    rpc_port=$(free_port) s3_port=$(free_port) admin_port=$(free_port)
    export S3_ENDPOINT=http://127.0.0.1:$s3_port
    # Fast settings so the server is not the bottleneck more than it must be: no compression
    # (zstd costs CPU), no fsync (a benchmark of the client, not of the disk).
    cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "lmdb"
metadata_fsync = false
data_fsync = false
compression_level = "none"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(hex 32)"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
admin_token = "$admin_token"
EOF
    # The AWS CLI's settings (multipart sizes are in MiB despite the "MB").
    export AWS_CONFIG_FILE=$work/aws.config AWS_SHARED_CREDENTIALS_FILE=/dev/null
    cat >"$AWS_CONFIG_FILE" <<EOF
[default]
region = garage
s3 =
  addressing_style = path
  multipart_threshold = ${part_mib}MB
  multipart_chunksize = ${part_mib}MB
  max_concurrent_requests = $concurrency
EOF
    GARAGE_DEFAULT_ACCESS_KEY=$AWS_ACCESS_KEY_ID GARAGE_DEFAULT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY \
      GARAGE_DEFAULT_BUCKET=$S3_BUCKET NO_COLOR=1 RUST_LOG=${S3UPFS_BENCH_GARAGE_LOG:-garage=warn} \
      "$garage_bin" -c "$dir/garage.toml" server --single-node --default-bucket \
      </dev/null >"$work/logs/garage.log" 2>&1 &
    garage_pid=$!
    echo "$garage_pid garage" >>"$state/pids"
    local i
    for i in $(seq 600); do
      kill -0 "$garage_pid" 2>/dev/null || break
      if raw count ready-probe/ >/dev/null 2>&1; then
        log "garage $(garage_version) on $S3_ENDPOINT (admin :$admin_port)"
        return 0
      fi
      sleep 0.1
    done
    stop_pid "$garage_pid"
    log "garage did not start (attempt $attempt): $(tail -3 "$work/logs/garage.log")"
  done
  die "could not start Garage; log: $work/logs/garage.log"
}

# Stops Garage and starts a fresh one (new data dir, ports and keys).
restart_garage() {
  kill -TERM "$garage_pid" 2>/dev/null || true
  stop_pid "$garage_pid"
  sed -i "/^$garage_pid garage\$/d" "$state/pids"
  start_garage
}

# Source data: one pseudo-random file (AES-CTR keystream: incompressible and ~1 GB/s, where
# /dev/urandom manages ~100 MB/s here); every other source is a slice of it.
#
# Garage stores data as content-addressed 1 MiB blocks and skips blocks it already has. All
# contestants use 8 MiB parts, so their blocks line up, and a repeat of a file finds its
# blocks stored while the first upload does not. To give every timed upload the same server
# path, the whole file is uploaded once before any timing ("warm-up").
# How many of the files workload's files go in directory number $1 (from 0).
files_in_dir() { echo $((files_count / files_dirs + ($1 < files_count % files_dirs ? 1 : 0))); }

make_sources() {
  local big=$MiB s i sizes=()
  if has_workload large || has_workload resume || has_workload verify; then sizes+=("$large_size"); fi
  ! has_workload parallel || sizes+=($((parallel_writers * parallel_size)))
  ! has_workload scale || ! has_contestant s3upfs || sizes+=("${scale_sizes[@]}")
  for s in "${sizes[@]}"; do
    [ "$s" -le "$big" ] || big=$s
  done
  log "generating $(mib "$big") MiB of source data"
  openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass "pass:$(hex 16)" </dev/zero 2>/dev/null |
    head -c "$big" >"$work/src/big.bin" || true # openssl dies of SIGPIPE: expected
  [ "$(stat -c %s "$work/src/big.bin")" = "$big" ] || die "generating source data failed"
  slice() { dd if="$work/src/big.bin" of="$2" bs=1M skip=$(($1 / MiB)) count=$(($3 / MiB)) status=none; }
  if has_workload large || has_workload resume || has_workload verify; then
    slice 0 "$work/src/large.bin" "$large_size"
    large_md5=$(md5sum <"$work/src/large.bin" | cut -d' ' -f1)
  fi
  if has_workload parallel; then
    for i in $(seq "$parallel_writers"); do
      slice $(((i - 1) * parallel_size)) "$work/src/parallel-$i.bin" "$parallel_size"
    done
    parallel_md5=$(md5sum <"$work/src/parallel-1.bin" | cut -d' ' -f1)
  fi
  if has_workload scale; then
    for s in "${scale_sizes[@]}"; do
      [ -e "$work/src/scale-$s.bin" ] || slice 0 "$work/src/scale-$s.bin" "$s"
    done
  fi
  # Small files: 16 KiB each, spread over 20 directories, each file distinct.
  local per rest count d
  per=$((small_count / small_dirs)) rest=$((small_count % small_dirs))
  for d in $(seq "$small_dirs"); do
    count=$((per + (d <= rest ? 1 : 0)))
    mkdir -p "$work/src/small/d$(printf %02d "$d")"
    [ "$count" -gt 0 ] || continue
    head -c $((count * small_size)) /dev/urandom |
      split -b "$small_size" -d -a 4 --additional-suffix=.bin - "$work/src/small/d$(printf %02d "$d")/f"
  done
  [ "$(find "$work/src/small" -type f | wc -l)" = "$small_count" ] || die "small files missing"
  # The files workload's tree: files_dirs directories d000, d001, … of distinct 4 KiB files.
  # Not warmed up (there are too many): every one is new data for Garage.
  if [ ${#files_contestants[@]} -gt 0 ]; then
    log "generating $files_count files of $((files_size >> 10)) KiB in $files_dirs directories"
    for d in $(seq 0 $((files_dirs - 1))); do
      count=$(files_in_dir "$d")
      mkdir -p "$work/src/files/d$(printf %03d "$d")"
      head -c $((count * files_size)) /dev/urandom |
        split -b "$files_size" -d -a 6 --additional-suffix=.bin - "$work/src/files/d$(printf %03d "$d")/f"
    done
    [ "$(find "$work/src/files" -type f | wc -l)" = "$files_count" ] || die "files workload: source files missing"
  fi
  log "warm-up: uploading the source data once (see make_sources)"
  raw put "$work/src/big.bin" warmup/big.bin >/dev/null
  raw put-dir "$work/src/small" warmup/small >/dev/null
}

# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------

clk_tck=$(getconf CLK_TCK)

now() { date +%s.%N; }

# utime+stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat; the comm
# field may contain spaces, so count from the closing parenthesis).
cpu_ticks() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  echo "${stat##*) }" | awk '{ print $12 + $13 }'
}

# Peak resident set size of a process in KiB (VmHWM: the high-water mark since it started;
# every workload uses a fresh daemon, so this is the workload's peak).
peak_rss_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# Resident set size now, in KiB.
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# Garage's S3 request counters: "Endpoint count" lines.
request_counters() {
  curl -fsS -H "Authorization: Bearer $admin_token" "http://127.0.0.1:$admin_port/metrics" |
    sed -n 's/^api_s3_request_counter{.*api_endpoint="\([A-Za-z0-9]*\)".*} \([0-9.e+]*\)$/\1 \2/p' |
    awk '{ n[$1] += $2 } END { for (e in n) printf "%s %d\n", e, n[e] }' | sort
}

# The counters once they stop moving (unchanged over 1.5 s, at most 30 s): requests a
# contestant sends after its files are complete (held attribute changes, write-back) count.
settled_request_counters() {
  local previous="" current i
  for i in $(seq 20); do
    current=$(request_counters)
    [ "$current" != "$previous" ] || break
    previous=$current
    sleep 1.5
  done
  printf '%s\n' "$current"
}

# record WORKLOAD CONTESTANT FIELD VALUE
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$records"; }

# Marks a contestant's workload as failed (the table says why) and ends its subshell.
fail() {
  record "$workload" "$contestant" status "failed: $*"
  log "$contestant/$workload FAILED: $*"
  exit 1
}

# Values of one field, one per line.
values() { awk -F'\t' -v w="$1" -v c="$2" -v f="$3" '$1 == w && $2 == c && $3 == f { print $4 }' "$records"; }

# "median (min–max)" of a field, with a printf format; "–" when there is no value.
summary() {
  local fmt=$4
  values "$1" "$2" "$3" | sort -g | awk -v fmt="$fmt" '
    { v[NR] = $1 }
    END {
      if (NR == 0) { printf "–"; exit }
      med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf fmt, med
      if (NR > 1) { printf " (" fmt "–" fmt ")", v[1], v[NR] }
    }'
}

# The plain median (for the chart; "-" when missing).
median() {
  values "$1" "$2" "$3" | sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "-"; exit }
    print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

max_of() { values "$1" "$2" "$3" | sort -g | tail -1; }

# The first value of a field, or "–".
first_value() { values "$1" "$2" "$3" | awk 'NR == 1 { v = $0 } END { print (NR ? v : "–") }'; }

# ---------------------------------------------------------------------------------------------
# Contestants: mount / unmount
# ---------------------------------------------------------------------------------------------

# Mounts the bucket's root for a contestant at $mnt and sets $daemon_pid; "raw" mounts nothing.
# Each contestant writes under its own top-level directory (= key prefix).
mount_contestant() {
  local c=$1 logf=$work/logs/$1-$workload.log
  daemon_pid=""
  mnt=$work/mnt/$c-$workload
  ! is_client "$c" || return 0
  mkdir -p "$mnt"
  echo "$mnt" >>"$state/mounts"
  case "$c" in
    s3upfs)
      "$s3upfs_bin" mount "s3://$S3_BUCKET/" "$mnt" --endpoint-url "$S3_ENDPOINT" --region garage \
        --force-path-style --foreground --part-size "${part_mib}MiB" --max-concurrency "$concurrency" \
        --max-memory "${max_memory_mib}MiB" --state-dir "$work/state" </dev/null >>"$logf" 2>&1 &
      ;;
    s3fs)
      # endpoint= is the signing region; multipart_size is in MiB.
      printf '%s:%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$work/s3fs.passwd"
      chmod 600 "$work/s3fs.passwd"
      s3fs "$S3_BUCKET" "$mnt" -f -o "url=$S3_ENDPOINT" -o use_path_request_style -o endpoint=garage \
        -o "passwd_file=$work/s3fs.passwd" -o "multipart_size=$part_mib" -o "parallel_count=$concurrency" \
        -o dbglevel=warn </dev/null >"$logf" 2>&1 &
      ;;
    rclone-off | rclone-writes)
      # The remote comes from the environment: no config file to write or leak.
      RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other \
        RCLONE_CONFIG_BENCH_ENDPOINT="$S3_ENDPOINT" RCLONE_CONFIG_BENCH_REGION=garage \
        RCLONE_CONFIG_BENCH_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
        RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
        RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true RCLONE_CONFIG_BENCH_NO_CHECK_BUCKET=true \
        rclone mount "bench:$S3_BUCKET" "$mnt" --vfs-cache-mode "${c#rclone-}" \
        --cache-dir "$work/rclone-cache-$c" --s3-chunk-size "${part_mib}M" \
        --s3-upload-concurrency "$concurrency" --config /dev/null --log-level INFO \
        </dev/null >"$logf" 2>&1 &
      ;;
  esac
  daemon_pid=$!
  echo "$daemon_pid $c" >>"$state/pids"
  local i
  for i in $(seq 300); do
    kill -0 "$daemon_pid" 2>/dev/null || fail "mount exited: $(tail -2 "$logf" | tr '\n' ' ')"
    if is_mounted "$mnt"; then
      # In the kernel's table; mountpoint(1) stats it, so the daemon must answer too.
      timeout -s KILL 10 mountpoint -q "$mnt" ||
        fail "mounted, but the mountpoint does not answer a stat within 10 s"
      mkdir -p "$mnt/$c"
      return 0
    fi
    sleep 0.1
  done
  fail "not mounted after 30 s: $(tail -2 "$logf" | tr '\n' ' ')"
}

unmount_contestant() {
  [ -n "$daemon_pid" ] || return 0
  detach_mount "$mnt"
  stop_pid "$daemon_pid"
  daemon_pid=""
}

# ---------------------------------------------------------------------------------------------
# Timed uploads
# ---------------------------------------------------------------------------------------------

# Waits for the background uploads in timed_upload's `pids` (one per key in `keys`); the
# first that exited non-zero fails the workload, with the last line of its error log.
wait_uploads() {
  local what=$1 errors=$2 i rc
  for i in "${!pids[@]}"; do
    rc=0
    wait "${pids[$i]}" || rc=$?
    [ "$rc" = 0 ] || fail "$what to ${keys[$i]} exited $rc: $(tail -1 "$errors")"
  done
}

# Runs one timed upload of files to keys (pairs SRC KEY ...) and records MiB/s, the
# contestant's CPU s/GiB and Garage's CPU s/GiB. The clock runs from the start of cp until
# every object exists with its full size (HEAD), so a write-back cache gets no credit for
# returning early.
timed_upload() {
  local srcs=() keys=() sizes=() total=0
  while [ $# -gt 0 ]; do
    srcs+=("$1") keys+=("$2") sizes+=("$(stat -c %s "$1")")
    total=$((total + ${sizes[-1]}))
    shift 2
  done
  sync # earlier dirty data (s3fs/rclone staging files) should not be written back now
  local t0 t1 c0 c1 g0 g1 cpu out i pids=() wait_args=()
  g0=$(cpu_ticks "$garage_pid")
  if [ "$contestant" = raw ]; then
    local pairs=()
    for i in "${!srcs[@]}"; do pairs+=("${srcs[$i]}" "${keys[$i]}"); done
    t0=$(now)
    out=$(raw put --part-size "${part_mib}MiB" --concurrency "$concurrency" "${pairs[@]}" 2>&1) ||
      fail "raw_upload put: $out"
    cpu=$(sed -n 's/.*cpu_seconds=\([0-9.]*\).*/\1/p' <<<"$out")
    record "$workload" "$contestant" rss_kib "$(sed -n 's/.*max_rss_kib=\([0-9]*\).*/\1/p' <<<"$out")"
  elif [ "$contestant" = aws-cli ]; then
    local times=$work/times-$workload rss
    : >"$times"
    t0=$(now)
    for i in "${!srcs[@]}"; do
      timed_command "$times" timeout -k 10 600 "${aws_cli[@]}" --endpoint-url "$S3_ENDPOINT" \
        s3 cp --only-show-errors "${srcs[$i]}" "s3://$S3_BUCKET/${keys[$i]}" 2>>"$work/logs/aws.err" &
      pids+=($!)
    done
    wait_uploads "aws s3 cp" "$work/logs/aws.err"
    read -r cpu rss < <(timed_totals "$times")
    record "$workload" "$contestant" rss_kib "$rss"
  else
    c0=$(cpu_ticks "$daemon_pid")
    t0=$(now)
    # Generous limit: a hung filesystem must not hang the benchmark.
    for i in "${!srcs[@]}"; do
      timeout -k 10 600 cp "${srcs[$i]}" "$mnt/${keys[$i]}" 2>>"$work/logs/cp.err" &
      pids+=($!)
    done
    wait_uploads cp "$work/logs/cp.err"
  fi
  for i in "${!keys[@]}"; do wait_args+=("${keys[$i]}" "${sizes[$i]}"); done
  out=$(raw wait --timeout 300 "${wait_args[@]}" 2>&1) || fail "objects incomplete: $out"
  t1=$(now)
  g1=$(cpu_ticks "$garage_pid")
  if ! is_client "$contestant"; then
    c1=$(cpu_ticks "$daemon_pid")
    kill -0 "$daemon_pid" 2>/dev/null || fail "daemon died"
    cpu=$(awk -v a="$c0" -v b="$c1" -v t="$clk_tck" 'BEGIN { print (b - a) / t }')
  fi
  local gib seconds
  gib=$(awk -v b="$total" 'BEGIN { print b / 1073741824 }')
  seconds=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
  record "$workload" "$contestant" mibs "$(awk -v b="$total" -v s="$seconds" 'BEGIN { print b / 1048576 / s }')"
  record "$workload" "$contestant" cpu_per_gib "$(awk -v c="$cpu" -v g="$gib" 'BEGIN { print c / g }')"
  record "$workload" "$contestant" garage_cpu_per_gib "$(awk -v a="$g0" -v b="$g1" -v t="$clk_tck" -v g="$gib" 'BEGIN { print (b - a) / t / g }')"
  log "$contestant/$workload: $(mib "$total") MiB in $(printf %.2f "$seconds") s"
}

# GETs an object and compares its MD5 with the source's.
verify_md5() {
  local key=$1 want=$2 got
  got=$(raw get "$key" 2>/dev/null | md5sum | cut -d' ' -f1)
  if [ "$got" = "$want" ]; then
    record "$workload" "$contestant" verified yes
  else
    fail "wrong bytes in $key (md5 $got, source $want)"
  fi
}

# Records the daemon's peak RSS before it goes away (raw recorded its own in timed_upload).
record_peak_rss() {
  [ -z "$daemon_pid" ] || record "$workload" "$contestant" rss_kib "$(peak_rss_kib "$daemon_pid")"
}

# ---------------------------------------------------------------------------------------------
# Workloads (each runs in a subshell per contestant: a failure ends only that one)
# ---------------------------------------------------------------------------------------------

workload_large() {
  local r
  mount_contestant "$contestant"
  is_client "$contestant" || mkdir -p "$mnt/$contestant/large"
  for r in $(seq "$repeat"); do
    timed_upload "$work/src/large.bin" "$contestant/large/r$r.bin"
  done
  record_peak_rss
  verify_md5 "$contestant/large/r1.bin" "$large_md5"
  unmount_contestant
}

workload_parallel() {
  local r i args
  mount_contestant "$contestant"
  for r in $(seq "$repeat"); do
    args=()
    is_client "$contestant" || mkdir -p "$mnt/$contestant/parallel-r$r"
    for i in $(seq "$parallel_writers"); do
      args+=("$work/src/parallel-$i.bin" "$contestant/parallel-r$r/f$i.bin")
    done
    timed_upload "${args[@]}"
  done
  record_peak_rss
  verify_md5 "$contestant/parallel-r1/f1.bin" "$parallel_md5"
  unmount_contestant
}

workload_scale() {
  local s r
  for s in "${scale_sizes[@]}"; do
    workload=scale-$s
    mount_contestant "$contestant"
    mkdir -p "$mnt/$contestant/scale"
    for r in $(seq "$repeat"); do
      timed_upload "$work/src/scale-$s.bin" "$contestant/scale/$s-r$r.bin"
    done
    record_peak_rss
    unmount_contestant
  done
}

# The field of `s3upfs status MNT --json` at a Python path (e.g. '["totals"]["bytes_uploaded"]').
status_field() {
  "$s3upfs_bin" status "$mnt" --json 2>/dev/null |
    python3 -c "import json, sys; r = json.load(sys.stdin)[0]; print(r$1)" 2>/dev/null || echo 0
}

workload_resume() {
  local size t0 seconds sent acknowledged
  size=$(stat -c %s "$work/src/large.bin")
  mount_contestant s3upfs
  mkdir -p "$mnt/s3upfs/resume"
  t0=$(now)
  cp "$work/src/large.bin" "$mnt/s3upfs/resume/plain.bin" || fail "plain cp failed"
  record resume s3upfs plain_seconds "$(awk -v a="$t0" -v b="$(now)" 'BEGIN { print b - a }')"
  record resume s3upfs plain_sent "$(status_field '["totals"]["bytes_uploaded"]')"
  # The same file again, killed at 70%.
  cp "$work/src/large.bin" "$mnt/s3upfs/resume/big.bin" 2>/dev/null &
  local cp_pid=$! i
  # Polled without python (a status answer takes milliseconds): on loopback the rest of
  # the file goes in about a second.
  for i in $(seq 30000); do
    acknowledged=$("$s3upfs_bin" status "$mnt" --json 2>/dev/null |
      sed -n 's/.*"bytes_acknowledged": *\([0-9]*\).*/\1/p' | head -1)
    [ "${acknowledged:-0}" -lt $((size * 7 / 10)) ] || break
    kill -0 "$cp_pid" 2>/dev/null || fail "the cp ended before 70% could be reached"
  done
  kill -KILL "$daemon_pid"
  wait "$cp_pid" 2>/dev/null || true
  detach_mount "$mnt"
  record resume s3upfs killed_at "$acknowledged"
  ls "$work/state/uploads/"*/*.json >/dev/null 2>&1 || fail "the cp completed before the kill"
  mount_contestant s3upfs
  t0=$(now)
  cp "$work/src/large.bin" "$mnt/s3upfs/resume/big.bin" || fail "the cp after the remount failed"
  seconds=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { print b - a }')
  sent=$(status_field '["totals"]["bytes_uploaded"]')
  record resume s3upfs resumed_seconds "$seconds"
  record resume s3upfs resumed_sent "$sent"
  verify_md5 s3upfs/resume/big.bin "$large_md5"
  log "s3upfs/resume: killed at $(mib "$acknowledged") MiB; the cp again sent $(mib "$sent") MiB in $(printf %.2f "$seconds") s"
  unmount_contestant
}

# Runs "$@" (a check of tree $1 named $2), recording its seconds and the S3 requests it
# made (Garage's counters) as verify/<$2>.
verify_timed() {
  local name=$1 t0 t1 rc=0
  shift
  request_counters >"$work/req-before"
  t0=$(now)
  "$@" >"$work/logs/verify-$name.out" 2>&1 || rc=$?
  t1=$(now)
  request_counters >"$work/req-after"
  record verify "$name" seconds "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
  record verify "$name" exit "$rc"
  join -a2 -e0 -o 0,1.2,2.2 "$work/req-before" "$work/req-after" |
    awk -v c="$name" 'BEGIN { OFS = "\t" } { d = $3 - $2; if (d > 0) print "verify", c, "req:" $1, d }' >>"$records"
}

workload_verify() {
  mount_contestant s3upfs
  mkdir -p "$mnt/s3upfs/verify/large" "$work/verify-large"
  cp -r "$work/src/small" "$mnt/s3upfs/verify/small" || fail "cp -r of the small files failed"
  cp "$work/src/large.bin" "$mnt/s3upfs/verify/large/large.bin" || fail "cp of the large file failed"
  ln -f "$work/src/large.bin" "$work/verify-large/large.bin"
  sleep 2
  local tree source
  for tree in small large; do
    source=$work/src/small
    [ "$tree" = small ] || source=$work/verify-large
    verify_timed "verify-$tree" "$s3upfs_bin" verify "$source" "s3://$S3_BUCKET/s3upfs/verify/$tree/" \
      --endpoint-url "$S3_ENDPOINT" --region "$AWS_REGION" --force-path-style --json
    grep -q '"differing": \[\]' "$work/logs/verify-verify-$tree.out" || fail "verify of $tree found differences"
    verify_timed "rsync-$tree" rsync -a --checksum --dry-run --itemize-changes "$source/" "$mnt/s3upfs/verify/$tree/"
    # Content only: cp -r does not keep times, so rsync itemizes those too (">f..t").
    ! grep -qE '^>f(c|\+)' "$work/logs/verify-rsync-$tree.out" || fail "rsync --checksum of $tree found differences"
  done
  record verify s3upfs crc_gib_s "$(sed -n 's/.*"crc32c_gib_per_second": *\([0-9.]*\).*/\1/p' "$work/logs/verify-verify-large.out")"
  unmount_contestant
}

verify_table() {
  local tree tool v
  echo "| tree | tool | seconds | HeadObject | GetObject | ListObjectsV2 | exit |"
  echo "|---|---|---|---|---|---|---|"
  for tree in small large; do
    for tool in verify rsync; do
      v=$tool-$tree
      echo "| $tree | $([ "$tool" = verify ] && echo '`s3upfs verify`' || echo '`rsync -a --checksum --dry-run`, mount') | $(first_value verify "$v" seconds | awk '$0 == "–" { print; next } { printf "%.2f", $0 }') | $(first_value verify "$v" req:HeadObject) | $(first_value verify "$v" req:GetObject) | $(first_value verify "$v" req:ListObjectsV2) | $(first_value verify "$v" exit) |"
    done
  done
  echo
  echo "CRC32C while hashing the large file: $(first_value verify s3upfs crc_gib_s | awk '$0 == "–" { print; next } { printf "%.1f", $0 }') GiB/s per core. Status: $(status_of verify s3upfs)."
}

# A resume figure with a printf format ("mib_bytes": bytes shown as MiB); "–" when missing.
resume_value() {
  first_value resume s3upfs "$1" | awk -v f="$2" '$0 == "–" { printf "–"; next }
    { if (f == "mib_bytes") printf "%.0f", $0 / 1048576; else printf f, $0 }'
}

resume_table() {
  echo "| run | MiB sent | seconds | status |"
  echo "|---|---|---|---|"
  echo "| plain cp of $(mib "$large_size") MiB | $(resume_value plain_sent mib_bytes) | $(resume_value plain_seconds %.2f) | $(status_of resume s3upfs) |"
  echo "| cp again after a kill at $(resume_value killed_at mib_bytes) MiB acknowledged | $(resume_value resumed_sent mib_bytes) | $(resume_value resumed_seconds %.2f) | $(status_of resume s3upfs) |"
}

workload_small() {
  local r prefix dest t0 t1 c0 c1 g0 g1 rc out objects bytes own_lists
  mount_contestant "$contestant"
  for r in $(seq "$repeat"); do
    prefix=$contestant/small-r$r/
    sync
    request_counters >"$work/req-before"
    g0=$(cpu_ticks "$garage_pid")
    [ -z "$daemon_pid" ] || c0=$(cpu_ticks "$daemon_pid")
    t0=$(now)
    if [ "$contestant" = raw ]; then
      out=$(raw put-dir --concurrency "$concurrency" "$work/src/small" "${prefix%/}" 2>&1) || fail "raw_upload put-dir: $out"
      c0=0 c1=$(awk -v s="$(sed -n 's/.*cpu_seconds=\([0-9.]*\).*/\1/p' <<<"$out")" -v t="$clk_tck" 'BEGIN { print s * t }')
      record "$workload" "$contestant" rss_kib "$(sed -n 's/.*max_rss_kib=\([0-9]*\).*/\1/p' <<<"$out")"
    elif [ "$contestant" = aws-cli ]; then
      local times=$work/times-small-$r cpu rss
      : >"$times"
      rc=0
      timed_command "$times" timeout -k 10 900 "${aws_cli[@]}" --endpoint-url "$S3_ENDPOINT" \
        s3 sync --only-show-errors "$work/src/small" "s3://$S3_BUCKET/${prefix%/}" 2>"$work/logs/aws.err" || rc=$?
      [ "$rc" = 0 ] || fail "aws s3 sync exited $rc: $(tail -1 "$work/logs/aws.err")"
      read -r cpu rss < <(timed_totals "$times")
      c0=0 c1=$(awk -v s="$cpu" -v t="$clk_tck" 'BEGIN { print s * t }')
      record "$workload" "$contestant" rss_kib "$rss"
    else
      dest=$mnt/${prefix%/}
      rc=0
      timeout -k 10 900 rsync -a "$work/src/small/" "$dest/" 2>"$work/logs/rsync.err" || rc=$?
      if [ "$rc" != 0 ]; then
        out=$(raw count "$prefix" 2>&1 || true)
        fail "rsync exited $rc ($(grep -m1 -o 'rsync: .*' "$work/logs/rsync.err" | sed "s|$mnt/||g" | cut -c1-100)); $(sed -n 's/.*objects=\([0-9]*\).*/\1/p' <<<"$out") of $small_count objects stored"
      fi
    fi
    # The clock stops when every file is an object (a write-back cache is still uploading).
    out=$(raw count --expect "$small_count" --timeout 300 "$prefix" 2>&1) || fail "$out"
    t1=$(now)
    [ -z "$daemon_pid" ] || c1=$(cpu_ticks "$daemon_pid")
    g1=$(cpu_ticks "$garage_pid")
    settled_request_counters >"$work/req-after"
    objects=$(sed -n 's/.*objects=\([0-9]*\).*/\1/p' <<<"$out")
    bytes=$(sed -n 's/.*bytes=\([0-9]*\).*/\1/p' <<<"$out")
    [ "$objects" = "$small_count" ] && [ "$bytes" = $((small_count * small_size)) ] ||
      fail "expected $small_count objects of $small_size bytes, found $objects objects, $bytes bytes"
    # Our own listings (raw count) are not the contestant's requests.
    own_lists=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$out")
    join -a2 -e0 -o 0,1.2,2.2 "$work/req-before" "$work/req-after" |
      awk -v own="$own_lists" -v w="$workload" -v c="$contestant" -v n="$small_count" 'BEGIN { OFS = "\t" }
        { d = $3 - $2; if ($1 == "ListObjectsV2") d -= own; if (d > 0) print w, c, "req:" $1, d / n }' >>"$records"
    record "$workload" "$contestant" files_per_s "$(awk -v n="$small_count" -v a="$t0" -v b="$t1" 'BEGIN { print n / (b - a) }')"
    record "$workload" "$contestant" cpu_ms_per_file "$(awk -v a="$c0" -v b="$c1" -v t="$clk_tck" -v n="$small_count" 'BEGIN { print (b - a) / t / n * 1000 }')"
    record "$workload" "$contestant" cpu_per_gib "$(awk -v a="$c0" -v b="$c1" -v t="$clk_tck" -v g="$((small_count * small_size))" 'BEGIN { print (b - a) / t / (g / 1073741824) }')"
    record "$workload" "$contestant" garage_cpu_per_gib "$(awk -v a="$g0" -v b="$g1" -v t="$clk_tck" -v g="$((small_count * small_size))" 'BEGIN { print (b - a) / t / (g / 1073741824) }')"
    log "$contestant/$workload: $small_count files in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s"
    # A second run must find everything up to date: sizes and mtimes survived.
    if [ "$contestant" = aws-cli ] && [ "$r" = 1 ]; then
      rc=0
      out=$(timeout -k 10 900 "${aws_cli[@]}" --endpoint-url "$S3_ENDPOINT" s3 sync --no-progress \
        "$work/src/small" "s3://$S3_BUCKET/${prefix%/}" 2>&1) || rc=$?
      [ "$rc" = 0 ] || fail "second aws s3 sync exited $rc: $(tail -1 <<<"$out" | cut -c1-80)"
      record "$workload" "$contestant" rerun_transferred "$(grep -c '^upload:' <<<"$out" || true)"
    elif ! is_client "$contestant" && [ "$r" = 1 ]; then
      rc=0
      out=$(timeout -k 10 900 rsync -a --stats "$work/src/small/" "$dest/" 2>&1) || rc=$?
      [ "$rc" = 0 ] || fail "second rsync exited $rc: $(grep -m1 'rsync' <<<"$out" | cut -c1-80)"
      record "$workload" "$contestant" rerun_transferred "$(sed -n 's/^Number of regular files transferred: *\([0-9,]*\).*/\1/p' <<<"$out" | tr -d ,)"
    fi
  done
  record_peak_rss
  unmount_contestant
}

# Records the files workload's S3 requests per file between req-before and req-after, by
# operation, as PHASE_req:OPERATION, minus OWN listings (the bench's).
files_requests() {
  join -a2 -e0 -o 0,1.2,2.2 "$work/req-before" "$work/req-after" |
    awk -v own="$2" -v p="$1" -v w="$workload" -v c="$contestant" -v n="$files_count" 'BEGIN { OFS = "\t" }
      { d = $3 - $2; if ($1 == "ListObjectsV2") d -= own; if (d > 0) print w, c, p "_req:" $1, d / n }' >>"$records"
}

# Many small files: one cp -r per source directory, in turn, each timed until its objects are
# listed, so the rate of the first and the last 10% of files can be compared; then
# find | xargs stat over the whole tree on the same mount. One run whatever --repeat says.
workload_files() {
  local d name n dest out t0 t1 c0 c1 g0 g1 rc seen rss own_lists=0 rows=$work/logs/files-dirs-$contestant.tsv
  mount_contestant "$contestant"
  dest=$mnt/$contestant/files
  is_client "$contestant" || mkdir -p "$dest"
  sync
  request_counters >"$work/req-before"
  # One line per directory: index, files, start, end, the client's and Garage's CPU ticks
  # before and after, the client's RSS after, the machine's load average (it is shared: a
  # busier machine in one tenth than in the other explains a different rate).
  : >"$rows"
  for d in $(seq 0 $((files_dirs - 1))); do
    name=d$(printf %03d "$d")
    n=$(files_in_dir "$d")
    g0=$(cpu_ticks "$garage_pid")
    t0=$(now)
    if [ "$contestant" = raw ]; then
      # The server's own curve: one PutObject at a time, as cp -r sends its files.
      out=$(raw put-dir --concurrency 1 "$work/src/files/$name" "$contestant/files/$name" 2>&1) ||
        fail "raw_upload put-dir of $name: $out"
      c0=0 c1=$(awk -v s="$(sed -n 's/.*cpu_seconds=\([0-9.]*\).*/\1/p' <<<"$out")" -v t="$clk_tck" 'BEGIN { print s * t }')
      rss=$(sed -n 's/.*max_rss_kib=\([0-9]*\).*/\1/p' <<<"$out")
    else
      c0=$(cpu_ticks "$daemon_pid")
      rc=0
      timeout -k 10 900 cp -r "$work/src/files/$name" "$dest/" 2>"$work/logs/cp.err" || rc=$?
      [ "$rc" = 0 ] || fail "cp -r of $name (after $(awk '{ n += $2 } END { print n + 0 }' "$rows") files) exited $rc: $(head -1 "$work/logs/cp.err" | sed "s|$mnt/||g" | cut -c1-100)"
    fi
    out=$(raw count --expect "$n" --timeout 300 "$contestant/files/$name/" 2>&1) || fail "$name: $out"
    t1=$(now)
    own_lists=$((own_lists + $(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$out")))
    if [ -n "$daemon_pid" ]; then
      c1=$(cpu_ticks "$daemon_pid")
      rss=$(rss_kib "$daemon_pid")
    fi
    g1=$(cpu_ticks "$garage_pid")
    echo "$d $n $t0 $t1 $c0 $c1 $g0 $g1 $rss $(cut -d' ' -f1 /proc/loadavg)" >>"$rows"
    # Per directory too, in order, for a second look at the curve (the .tsv beside the table).
    tail -1 "$rows" | awk -v t="$clk_tck" -v w="$workload" -v c="$contestant" 'BEGIN { OFS = "\t" } {
      print w, c, "dir_files_per_s", $2 / ($4 - $3)
      print w, c, "dir_cpu_ms_per_file", ($6 - $5) / t / $2 * 1000
      print w, c, "dir_garage_cpu_ms_per_file", ($8 - $7) / t / $2 * 1000
      print w, c, "dir_rss_kib", $9
      print w, c, "dir_loadavg", $10 }' >>"$records"
    [ $(((d + 1) % 10)) != 0 ] ||
      log "$contestant/$workload: $((d + 1)) of $files_dirs directories, $(awk '{ n += $2 } END { print n }' "$rows") files," \
        "$(awk 'NR == 1 { a = $3 } { b = $4 } END { printf "%.0f", b - a }' "$rows") s, RSS $((rss >> 10)) MiB"
  done
  [ -z "$daemon_pid" ] || kill -0 "$daemon_pid" 2>/dev/null || fail "daemon died"
  request_counters >"$work/req-after"
  files_requests cp "$own_lists"
  # The first and the last tenth of the directories (so of the files, give or take one per
  # directory): files/s, and CPU ms per file of the client (daemon or baseline) and of Garage.
  awk -v k=$((files_dirs / 10 > 0 ? files_dirs / 10 : 1)) -v dirs="$files_dirs" -v t="$clk_tck" \
    -v w="$workload" -v c="$contestant" 'BEGIN { OFS = "\t" }
    { part = ($1 < k) ? "first" : ($1 >= dirs - k) ? "last" : ""
      all_n += $2; all_s += $4 - $3
      if (part == "") next
      n[part] += $2; s[part] += $4 - $3; cpu[part] += $6 - $5; gcpu[part] += $8 - $7
      load[part] += $10; dirs_in[part]++ }
    END {
      print w, c, "files_per_s", all_n / all_s
      print w, c, "cp_seconds", all_s
      for (p in n) {
        print w, c, p "_files_per_s", n[p] / s[p]
        print w, c, p "_cpu_ms_per_file", cpu[p] / t / n[p] * 1000
        print w, c, p "_garage_cpu_ms_per_file", gcpu[p] / t / n[p] * 1000
        print w, c, p "_loadavg", load[p] / dirs_in[p]
      }
      print w, c, "last_over_first", (n["last"] / s["last"]) / (n["first"] / s["first"])
    }' "$rows" >>"$records"
  log "$contestant/$workload: $files_count files in $(first_value "$workload" "$contestant" cp_seconds) s;" \
    "last 10% at $(first_value "$workload" "$contestant" last_over_first) × the first 10%'s rate"
  # The baseline has no mount to stat, nor a daemon whose memory counts.
  ! is_client "$contestant" || return 0
  record "$workload" "$contestant" rss_after_cp_kib "$(rss_kib "$daemon_pid")"
  # Every file's attributes, through the mount that wrote them.
  request_counters >"$work/req-before"
  t0=$(now)
  rc=0
  # shellcheck disable=SC2016 # $1 and $2 are the inner shell's arguments
  timeout -k 10 1800 bash -o pipefail -c 'find "$1" -type f -print0 | tee "$2" | xargs -0 stat >/dev/null' \
    _ "$dest" "$work/files.list" 2>"$work/logs/stat.err" || rc=$?
  t1=$(now)
  [ "$rc" = 0 ] || fail "find | xargs stat exited $rc: $(head -1 "$work/logs/stat.err" | sed "s|$mnt/||g" | cut -c1-100)"
  seen=$(tr -cd '\0' <"$work/files.list" | wc -c)
  [ "$seen" = "$files_count" ] || fail "find saw $seen files, $files_count were copied"
  request_counters >"$work/req-after"
  files_requests stat 0
  record "$workload" "$contestant" stat_seconds "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
  record "$workload" "$contestant" rss_after_stat_kib "$(rss_kib "$daemon_pid")"
  log "$contestant/$workload: find | xargs stat of $seen files in $(first_value "$workload" "$contestant" stat_seconds) s"
  record_peak_rss
  unmount_contestant
}

# Runs one workload for one contestant in a subshell: errexit works there (it would not in
# an `if`), a failure ends only this pair, and whatever it mounted or started is released.
run_pair() {
  local rc=0
  log "== $1: $2"
  local lines
  lines=$(wc -l <"$records")
  rm -f "$state/last-error"
  # In the background, with `wait`: the INT/TERM trap runs at once instead of after the
  # workload (bash defers traps while a foreground child runs).
  (
    workload=$1 contestant=$2
    trap - INT TERM
    # Where an unexpected command failed, for the table (fail() records its own reason).
    set -E
    trap 'echo "$workload $contestant line $LINENO: $BASH_COMMAND" >"$state/last-error"' ERR
    "workload_$1"
    record "$workload" "$contestant" status ok
  ) </dev/null &
  pair_pid=$!
  wait "$pair_pid" || rc=$?
  pair_pid=""
  release
  if [ "$rc" != 0 ]; then
    if ! tail -n +$((lines + 1)) "$records" | grep -q "status	failed"; then
      local w c rest
      read -r w c rest <"$state/last-error" 2>/dev/null || { w=$1 rest="exit $rc"; }
      record "$w" "$2" status "failed: $rest"
    fi
    log "$2/$1 failed (rc $rc), going on"
  fi
}

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

# "ok" or the first failure.
status_of() {
  local s
  s=$(values "$1" "$2" status | grep -m1 -v '^ok$' || true)
  echo "${s:-ok}"
}

rss_mib() {
  local kib
  kib=$(max_of "$1" "$2" rss_kib)
  [ -n "$kib" ] && awk -v k="$kib" 'BEGIN { printf "%.0f", k / 1024 }' || echo "–"
}

label() {
  case "$1" in
    raw) echo "raw aws-sdk-s3 (baseline)" ;;
    s3upfs) echo "s3upfs" ;;
    s3fs) echo "s3fs-fuse $(s3fs --version 2>/dev/null | sed -n 's/.*V\([0-9.]*\).*/\1/p' | head -1)" ;;
    rclone-off) echo "rclone $(rclone version 2>/dev/null | sed -n 's/^rclone v\([0-9.]*\).*/\1/p') mount, cache off" ;;
    rclone-writes) echo "rclone $(rclone version 2>/dev/null | sed -n 's/^rclone v\([0-9.]*\).*/\1/p') mount, cache writes" ;;
    aws-cli) echo "AWS CLI $("${aws_cli[@]}" --version 2>&1 | sed -n 's|^aws-cli/\([0-9.]*\).*|\1|p') (s3 cp, s3 sync)" ;;
  esac
}

# Chart axis labels.
short_label() {
  case "$1" in
    raw) echo "raw SDK" ;;
    s3fs) echo "s3fs-fuse" ;;
    rclone-off) echo "rclone (off)" ;;
    rclone-writes) echo "rclone (writes)" ;;
    aws-cli) echo "aws CLI" ;;
    *) echo "$1" ;;
  esac
}

throughput_table() {
  local w=$1 c
  echo "| contestant | MiB/s | CPU s/GiB | peak RSS MiB | Garage CPU s/GiB | bytes | status |"
  echo "|---|---|---|---|---|---|---|"
  for c in "${contestants[@]}"; do
    echo "| $(label "$c") | $(summary "$w" "$c" mibs %.0f) | $(summary "$w" "$c" cpu_per_gib %.2f) |" \
      "$(rss_mib "$w" "$c") | $(summary "$w" "$c" garage_cpu_per_gib %.1f) |" \
      "$(first_value "$w" "$c" verified | sed 's/yes/md5 ok/') | $(status_of "$w" "$c") |"
  done
}

small_table() {
  local c breakdown total
  echo "| contestant | files/s | S3 requests per file | by operation | CPU ms/file | CPU s/GiB | peak RSS MiB | 2nd run: files re-sent | status |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for c in "${contestants[@]}"; do
    # Per-operation means over the repeats.
    breakdown=$(awk -F'\t' -v c="$c" -v r="$repeat" '$1 == "small" && $2 == c && $3 ~ /^req:/ {
        sub(/^req:/, "", $3); n[$3] += $4 }
      END { for (e in n) printf "%s %.2f\n", e, n[e] / r }' "$records" | sort -k2,2gr)
    total=$(printf '%s' "$breakdown" | awk '{ t += $2 } END { if (NR) printf "%.2f", t; else printf "–" }')
    breakdown=$(printf '%s' "$breakdown" | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2 }')
    echo "| $(label "$c") | $(summary small "$c" files_per_s %.0f) | $total | ${breakdown:-–} |" \
      "$(summary small "$c" cpu_ms_per_file %.2f) | $(summary small "$c" cpu_per_gib %.1f) | $(rss_mib small "$c") |" \
      "$(first_value small "$c" rerun_transferred) | $(status_of small "$c") |"
  done
}

scale_table() {
  local s peak="" previous="" last=""
  echo "| file size | MiB/s | CPU s/GiB | peak RSS MiB | Garage CPU s/GiB | status |"
  echo "|---|---|---|---|---|---|"
  for s in "${scale_sizes[@]}"; do
    echo "| $(mib "$s") MiB | $(summary "scale-$s" s3upfs mibs %.0f) | $(summary "scale-$s" s3upfs cpu_per_gib %.2f) |" \
      "$(rss_mib "scale-$s" s3upfs) | $(summary "scale-$s" s3upfs garage_cpu_per_gib %.1f) | $(status_of "scale-$s" s3upfs) |"
    previous=$last
    last=$(max_of "scale-$s" s3upfs rss_kib)
    if [ -n "$last" ] && { [ -z "$peak" ] || [ "$last" -gt "$peak" ]; }; then peak=$last; fi
  done
  [ -n "$peak" ] || return 0
  echo
  # The bound is the target: --max-memory + 64 MiB. Below it the daemon holds at most the
  # upload backlog (2 × concurrency parts in flight or queued) plus the part being filled,
  # so once a file is large enough to fill the backlog, a larger one needs no more.
  awk -v peak="$peak" -v limit=$((max_memory_mib + 64)) -v prev="${previous:-0}" -v last="${last:-0}" \
    -v backlog=$(((2 * concurrency + 1) * part_mib)) 'BEGIN {
      printf "Largest peak RSS: %.0f MiB; target ≤ --max-memory + 64 MiB = %d MiB: %s.", peak / 1024, limit,
        (peak / 1024 <= limit ? "met" : "MISSED")
      if (prev > 0 && last > 0)
        printf " The two largest sizes peak at %.0f and %.0f MiB (%.2f×; part backlog %d MiB).", prev / 1024, last / 1024, last / prev, backlog
      printf "\n" }'
}

# The files workload's first value of a contestant's field, with a printf format (KiB shown
# as MiB with "mib"); "–" when missing.
files_value() {
  first_value files "$1" "$2" | awk -v f="$3" '$0 == "–" { printf "–"; next }
    { if (f == "mib") printf "%.0f", $0 / 1024; else printf f, $0 }'
}

# "PutObject 1.00, …" for a contestant's phase of the files workload, or "none".
files_requests_text() {
  awk -F'\t' -v c="$1" -v p="$2_req:" '$1 == "files" && $2 == c && index($3, p) == 1 {
      sub(p, "", $3); printf "%s %.2f\n", $3, $4 }' "$records" | sort -k2,2gr |
    awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2 } END { if (NR == 0) printf "none" }'
}

files_table() {
  local c peak ratio
  echo "| contestant | files/s | first 10% files/s | last 10% files/s | last ÷ first | client CPU ms/file, first → last 10% | Garage CPU ms/file, first → last 10% | copy s | find + stat s | RSS after cp MiB | RSS after stat MiB | peak RSS MiB | status |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  for c in "${files_contestants[@]}"; do
    echo "| $(label "$c") | $(files_value "$c" files_per_s %.0f) | $(files_value "$c" first_files_per_s %.0f) |" \
      "$(files_value "$c" last_files_per_s %.0f) | $(files_value "$c" last_over_first %.2f) |" \
      "$(files_value "$c" first_cpu_ms_per_file %.2f) → $(files_value "$c" last_cpu_ms_per_file %.2f) |" \
      "$(files_value "$c" first_garage_cpu_ms_per_file %.2f) → $(files_value "$c" last_garage_cpu_ms_per_file %.2f) |" \
      "$(files_value "$c" cp_seconds %.0f) | $(files_value "$c" stat_seconds %.1f) |" \
      "$(files_value "$c" rss_after_cp_kib mib) | $(files_value "$c" rss_after_stat_kib mib) |" \
      "$(rss_mib files "$c") | $(status_of files "$c") |"
  done
  echo
  for c in "${files_contestants[@]}"; do
    echo "$(label "$c"): S3 requests per file (Garage's counters, the bench's listings subtracted):" \
      "copy $(files_requests_text "$c" cp)$(is_client "$c" || echo "; find + stat $(files_requests_text "$c" stat)");" \
      "load average (1 min) while copying: first 10% $(files_value "$c" first_loadavg %.1f)," \
      "last 10% $(files_value "$c" last_loadavg %.1f) ($(nproc) cores)."
    echo
  done
  has_contestant s3upfs || return 0
  peak=$(max_of files s3upfs rss_kib)
  ratio=$(first_value files s3upfs last_over_first)
  [ -n "$peak" ] && [ "$ratio" != – ] || return 0
  awk -v peak="$peak" -v limit="$files_rss_target_mib" -v ratio="$ratio" 'BEGIN {
    printf "s3upfs: peak RSS %.0f MiB; target < %d MiB: %s. ", peak / 1024, limit, (peak / 1024 < limit ? "met" : "MISSED")
    printf "Last 10%% of files at %.2f × the first 10%%'"'"'s rate (target ≥ 0.9 ×): %s.\n", ratio,
      (ratio >= 0.9 ? "flat" : "NOT flat") }'
}

report() {
  local c
  echo "# s3upfs benchmark $(date '+%Y-%m-%d %H:%M')${quick_suffix:+ (quick)}"
  echo
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo) GiB RAM;" \
    "Garage $(garage_version) on 127.0.0.1" \
    "(compression none, no fsync); s3upfs $(git -C "$repo" describe --always --dirty 2>/dev/null || echo '?')."
  echo "Everyone: ${part_mib} MiB parts, ${concurrency} uploads in flight. ${repeat} run(s) per figure: median (min–max)."
  echo "Throughput counts until the object exists with its full size (HEAD). CPU and peak RSS are"
  echo "the filesystem daemon's (for the baseline: the uploading process); Garage's CPU is beside it."
  echo
  if has_workload large; then
    echo "## Large file: cp of $(mib "$large_size") MiB"
    echo
    throughput_table large
    echo
  fi
  if has_workload parallel; then
    echo "## Parallel writers: $parallel_writers concurrent cp of $(mib "$parallel_size") MiB"
    echo
    throughput_table parallel
    echo
  fi
  if has_workload small; then
    echo "## Small files: rsync -a of $small_count × $((small_size >> 10)) KiB in $small_dirs directories"
    echo
    echo "files/s until all objects are listed; requests from Garage's counters once the contestant is"
    echo "idle (anything it sends after the clock stops counts too), the bench's own listings subtracted."
    echo
    small_table
  fi
  if has_workload scale && has_contestant s3upfs; then
    echo
    echo "## Scale: s3upfs, one cp per size"
    echo
    scale_table
  fi
  if has_workload resume && has_contestant s3upfs; then
    echo
    echo "## Resume: cp of $(mib "$large_size") MiB, the daemon killed at 70%, a remount, the same cp"
    echo
    echo "MiB sent: bytes S3 acknowledged for the cp, from \`s3upfs status\`; the resumed cp sends"
    echo "only the parts S3 did not hold (and part 1, kept in memory until completion)."
    echo
    resume_table
  fi
  if has_workload verify && has_contestant s3upfs; then
    echo
    echo "## Verify: $small_count small files and one file of $(mib "$large_size") MiB against the bucket"
    echo
    verify_table
  fi
  if [ ${#files_contestants[@]} -gt 0 ]; then
    echo
    echo "## Files: cp -r of $files_count × $((files_size >> 10)) KiB in $files_dirs directories, then find | xargs stat"
    echo
    echo "One cp -r per directory, in turn, each timed until its objects are listed; the first and last"
    echo "10% are the first and last $((files_dirs / 10)) directories. One run, each contestant on a fresh Garage"
    echo "(empty bucket). RSS is the daemon's (VmRSS; peak: VmHWM). The baseline sends the same files as"
    echo "PutObjects one at a time (as cp -r does): the server's own curve."
    echo
    files_table
  fi
}

# Bar chart of the main figures: MiB/s (large, parallel) and CPU s/GiB per contestant.
chart() {
  local data=$work/chart.dat png=$1 c
  {
    echo "# contestant large parallel cpu_large cpu_parallel"
    for c in "${contestants[@]}"; do
      echo "\"$(short_label "$c")\" $(median large "$c" mibs) $(median parallel "$c" mibs)" \
        "$(median large "$c" cpu_per_gib) $(median parallel "$c" cpu_per_gib)"
    done
  } >"$data"
  gnuplot -e "datafile='$data'; outfile='$png'; n=${#contestants[@]}; title_suffix='$(mib "$large_size") MiB file, $parallel_writers × $(mib "$parallel_size") MiB parallel, Garage on 127.0.0.1, $(nproc) cores'" \
    "$repo/bench/chart.gp" 2>"$work/logs/gnuplot.err" || log "chart failed: $(cat "$work/logs/gnuplot.err")"
}

# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

main() {
  local started c
  install_tools
  started=$(date +%s) # the bench itself, without installs and builds
  start_garage
  make_sources
  local w
  for w in large parallel small; do
    has_workload "$w" || continue
    for c in "${contestants[@]}"; do run_pair "$w" "$c"; done
  done
  if has_workload scale && has_contestant s3upfs; then run_pair scale s3upfs; fi
  if has_workload resume && has_contestant s3upfs; then run_pair resume s3upfs; fi
  if has_workload verify && has_contestant s3upfs; then run_pair verify s3upfs; fi
  for c in "${files_contestants[@]}"; do
    restart_garage # an empty bucket for each: the curve is the contestant's from 0 objects
    run_pair files "$c"
  done

  mkdir -p "$repo/bench/results"
  local base
  base=$repo/bench/results/$(date +%Y-%m-%dT%H%M)$quick_suffix
  cp "$records" "$base.tsv" # the raw measurements, for a second look
  report >"$base.md"
  echo "" >>"$base.md"
  echo "Total bench time: $(($(date +%s) - started)) s." >>"$base.md"
  local written=$base.md
  # The chart shows the large and parallel figures only.
  if has_workload large || has_workload parallel; then
    chart "$base.png"
    written="$written and $base.png"
  fi
  echo
  cat "$base.md"
  echo
  log "wrote $written"
}

main
