#!/usr/bin/env bash
# Issue 22's TAILDIR throughput case, for docs/perf.md: TAILDIR -> file channel, 100-byte
# lines (newline included) from 4 files written beforehand.
#
# Usage: benches/scripts/taildir-bench.sh
#   BENCH_BIN:  where the binaries are (default: ./target/release):
#               cargo build --release -p millrace-server -p millrace-adapters
#   LINES:      lines per file (default 500000)
#   BATCH:      the source's batchSize (default 5000; the channel's transactionCapacity is 10000)
#
# channeld runs one file channel (one data dir, fsync per transaction) and the TAILDIR
# source as its channel-agent process; the clock runs from channeld's start until
# /metrics says the channel holds every line. Lines/s = 4 * LINES / seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin="${BENCH_BIN:-target/release}"
lines="${LINES:-500000}"
batch="${BATCH:-5000}"
for binary in channeld channel-agent; do
    [ -x "$bin/$binary" ] || { echo "no $bin/$binary: see the usage above" >&2; exit 1; }
done
work="$(mktemp -d "$PWD/target/taildir-bench.XXXXXX")"
pid=""
cleanup() {
    [ -n "$pid" ] && { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/logs"
for name in a b c d; do
    python3 - "$work/logs/$name.log" "$name" "$lines" <<'PY'
import sys
path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
pad = "x" * 100
with open(path, "w") as out:
    for number in range(count):
        text = f"{name} {number:09} "
        out.write(text + pad[: 99 - len(text)] + "\n")
PY
done
total=$((4 * lines))
http_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/agent.conf" <<CONF
a1.server.http = 127.0.0.1:$http_port
a1.server.bind = 127.0.0.1:0
a1.channels = c1
a1.channels.c1.type = file
a1.channels.c1.checkpointDir = $work/c1/checkpoint
a1.channels.c1.dataDirs = $work/c1/data
a1.channels.c1.capacity = $((total + 1000))
a1.channels.c1.transactionCapacity = 10000
a1.channels.c1.minimumRequiredSpace = 1048576
a1.sources = r1
a1.sources.r1.type = TAILDIR
a1.sources.r1.channels = c1
a1.sources.r1.positionFile = $work/taildir_position.json
a1.sources.r1.filegroups = g1
a1.sources.r1.filegroups.g1 = $work/logs/.*\\.log
a1.sources.r1.batchSize = $batch
CONF
sync
start=$(date +%s.%N)
RUST_LOG=warn "$bin/channeld" -f "$work/agent.conf" -n a1 2>"$work/channeld.log" &
pid=$!
size=0
while [ "$size" -lt "$total" ]; do
    sleep 0.05
    size=$(curl -s "http://127.0.0.1:$http_port/metrics" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin).get("CHANNEL.c1",{}).get("ChannelSize","0"))' 2>/dev/null || echo 0)
    kill -0 "$pid" 2>/dev/null || { cat "$work/channeld.log" >&2; exit 1; }
done
end=$(date +%s.%N)
# CPU seconds (user + system) of channeld and of the source's channel-agent, so a run on
# a busy machine still says what the flow costs.
ticks=$(getconf CLK_TCK)
cpu_s() { awk -v ticks="$ticks" '{printf "%.2f", ($14 + $15) / ticks}' "/proc/$1/stat"; }
agent=$(pgrep -P "$pid" channel-agent | head -1)
python3 -c "s=$end-$start; print(f'taildir: {$total} lines of 100 bytes from 4 files, batchSize $batch: {s:.2f} s, {$total/s:,.0f} lines/s; CPU s: channeld $(cpu_s "$pid"), channel-agent $(cpu_s "$agent")')"
