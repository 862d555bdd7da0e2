#!/usr/bin/env bash
# The performance issue's channel-bench cases in one sitting, for docs/perf.md.
#
# Usage: benches/scripts/bench-suite.sh [CASE ...]
#   CASE: probe puts takes mixed batch1 4k memput memtake (default: all, in that order),
#         or batch1one (batches of 1 from a single producer; not in the default run)
#   BENCH_DIR: where the channel's files and the probe file go (default: a new directory
#              under ./target, on the same disk as the build)
#   BENCH_BIN: where the release binaries are (default: ./target/release)
#   BENCH_PORT: channeld's protocol port (default 47450; the HTTP port is the next one),
#               so that two suites on one machine do not meet
#
# Starts a release channeld with one file channel (c1: one data dir, capacity 10 M,
# fsync per transaction) and one memory channel (m1), runs each case with --json and
# prints one line per case: its name, channel-bench's JSON, and the CPU time channeld
# spent on the case (server_cpu_s, from /proc/PID/stat: a figure that the disk's swings
# and other work on the machine disturb far less than throughput). The probe case prints
# the physical reference measured in the same sitting (sync probe and dd). To compare two
# builds, run the suite with each (BENCH_BIN) and compare server_cpu_s.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin="${BENCH_BIN:-target/release}"
for binary in channeld channel-bench; do
    [ -x "$bin/$binary" ] || { echo "no $bin/$binary: run cargo build --release --workspace" >&2; exit 1; }
done
work="${BENCH_DIR:-$(mktemp -d "$PWD/target/bench-suite.XXXXXX")}"
mkdir -p "$work"
protocol_port="${BENCH_PORT:-47450}"
http_port=$((protocol_port + 1))

cat >"$work/bench.conf" <<EOF
a1.channels = c1 m1
a1.channels.c1.type = file
a1.channels.c1.capacity = 10000000
a1.channels.c1.transactionCapacity = 10000
a1.channels.c1.dataDirs = $work/data
a1.channels.c1.checkpointDir = $work/checkpoint
a1.channels.m1.type = memory
a1.channels.m1.capacity = 10000000
a1.channels.m1.transactionCapacity = 10000
a1.server.bind = 127.0.0.1:$protocol_port
a1.server.http = 127.0.0.1:$http_port
EOF

server_pid=""
stop_server() {
    if [ -n "$server_pid" ]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
trap 'stop_server; [ -z "${BENCH_DIR:-}" ] && rm -rf "$work"' EXIT

start_server() {
    RUST_LOG=warn "$bin/channeld" -f "$work/bench.conf" -n a1 --ready-file "$work/ready.json" \
        2>"$work/channeld.log" &
    server_pid=$!
    for _ in $(seq 1 600); do
        [ -s "$work/ready.json" ] && return 0
        sleep 0.1
    done
    echo "channeld did not become ready; its log:" >&2
    cat "$work/channeld.log" >&2
    exit 1
}

# channeld's CPU time so far (user + system), in clock ticks.
server_cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$server_pid/stat"
}

bench() {
    local name="$1"
    shift
    local before after result
    before=$(server_cpu_ticks)
    result=$("$bin/channel-bench" --server "127.0.0.1:$protocol_port" --json "$@")
    after=$(server_cpu_ticks)
    printf '%-8s %s server_cpu_s=%s\n' "$name" "$result" \
        "$(awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", ticks / hz}')"
}

probe() {
    printf '%-8s %s\n' probe "$(python3 benches/scripts/syncprobe.py "$work/syncprobe")"
    local dd_rate
    dd_rate=$(dd if=/dev/zero of="$work/dd" bs=4M count=256 conv=fdatasync 2>&1 | tail -1 | awk -F', ' '{print $NF}')
    rm -f "$work/dd"
    printf '%-8s %s\n' dd "buffered sequential write, 1 GiB, conv=fdatasync: $dd_rate"
}

cases=("$@")
[ "${#cases[@]}" -gt 0 ] || cases=(probe puts takes mixed batch1 4k memput memtake probe)
rm -f "$work/ready.json"
start_server
for case in "${cases[@]}"; do
    case "$case" in
        probe) probe ;;
        puts) bench puts --channel c1 --mode put --events 2000000 --producers 4 --batch 100 --pipeline 16 ;;
        takes) bench takes --channel c1 --mode take --events 2000000 --consumers 4 --batch 100 --pipeline 8 ;;
        mixed) bench mixed --channel c1 --mode mixed --events 1000000 --producers 4 --consumers 4 --batch 100 --pipeline 16 ;;
        batch1) bench batch1 --channel c1 --mode put --events 200000 --producers 16 --batch 1 ;;
        batch1one) bench batch1one --channel c1 --mode put --events 20000 --producers 1 --batch 1 ;;
        4k) bench 4k --channel c1 --mode put --events 200000 --size 4096 --producers 4 --batch 100 --pipeline 4 ;;
        memput) bench memput --channel m1 --mode put --events 4000000 --producers 4 --batch 100 --pipeline 16 ;;
        memtake) bench memtake --channel m1 --mode take --events 4000000 --consumers 4 --batch 100 --pipeline 8 ;;
        *) echo "unknown case $case" >&2; exit 2 ;;
    esac
done
stop_server
