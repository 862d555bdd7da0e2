#!/usr/bin/env bash
# Issue 20's throughput cases for the avro source and sink, for docs/perf.md.
#
# Usage: benches/scripts/avro-bench.sh [source|sink ...]   (default: source sink)
#   BENCH_BIN: where the release binaries are (default: ./target/release); the load
#              generator is the example `avro_load`:
#              cargo build --release -p millrace-server -p millrace-adapters -p millrace-tools
#              cargo build --release -p millrace-benches --example avro_load
#   EVENTS:    events per case (default 2000000)
#   IN_FLIGHT: source case: calls each connection keeps unanswered (default 1, as Flume's
#              clients; more pipelines them, see the source's maxCallsInFlight)
#   CHANNELD_CONNECTIONS: source case: the source's channeldConnections (default 4)
#
# source: a release channeld with one file channel (fsync per transaction) fed by an avro
#         source; avro_load sends appendBatch calls of 100 events of 256 bytes from 4
#         connections, each waiting for its OK (given only after the commit).
# sink:   an upstream channeld whose memory channel is drained by 4 avro sinks
#         (batch-size 100) into a downstream channeld's avro source and file channel;
#         channel-bench fills the upstream channel, and the case ends when the downstream
#         channel holds every event. The time includes the fill (a memory-channel put,
#         several times faster than the flow).
set -euo pipefail
cd "$(dirname "$0")/../.."

bin="${BENCH_BIN:-target/release}"
examples="$bin/examples"
events="${EVENTS:-2000000}"
in_flight="${IN_FLIGHT:-1}"
channeld_connections="${CHANNELD_CONNECTIONS:-4}"
for binary in channeld channel-agent channel-bench; do
    [ -x "$bin/$binary" ] || { echo "no $bin/$binary: see the usage above" >&2; exit 1; }
done
[ -x "$examples/avro_load" ] || { echo "no $examples/avro_load: see the usage above" >&2; exit 1; }
work="$(mktemp -d "$PWD/target/avro-bench.XXXXXX")"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

# start_server NAME: runs channeld on $work/NAME.conf, agent a1, and waits until ready.
start_server() {
    local name="$1"
    RUST_LOG=warn "$bin/channeld" -f "$work/$name.conf" -n a1 --ready-file "$work/$name.ready" \
        2>"$work/$name.log" &
    pids+=($!)
    for _ in $(seq 1 600); do
        [ -s "$work/$name.ready" ] && return 0
        sleep 0.1
    done
    echo "channeld $name did not become ready; its log:" >&2
    cat "$work/$name.log" >&2
    exit 1
}

wait_for_port() {
    for _ in $(seq 1 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    exit 1
}

channel_size() { # HTTP_PORT CHANNEL
    curl -s "http://127.0.0.1:$1/metrics" |
        python3 -c "import json,sys; print(json.load(sys.stdin)['CHANNEL.$2']['ChannelSize'])"
}

file_channel() { # NAME DIR
    cat <<CONF
a1.channels.$1.type = file
a1.channels.$1.capacity = 10000000
a1.channels.$1.transactionCapacity = 10000
a1.channels.$1.dataDirs = $2/data
a1.channels.$1.checkpointDir = $2/checkpoint
CONF
}

source_case() {
    {
        echo "a1.channels = c1"
        file_channel c1 "$work/source"
        cat <<CONF
a1.sources = r1
a1.sources.r1.type = avro
a1.sources.r1.bind = 127.0.0.1
a1.sources.r1.port = 47460
a1.sources.r1.channels = c1
a1.sources.r1.channeldConnections = $channeld_connections
a1.server.bind = 127.0.0.1:47461
a1.server.http = 127.0.0.1:47462
CONF
    } >"$work/source.conf"
    start_server source
    wait_for_port 47460
    printf 'source   %s\n' "$("$examples/avro_load" 127.0.0.1:47460 "$events" 4 100 256 "$in_flight")"
}

sink_case() {
    {
        echo "a1.channels = d1"
        file_channel d1 "$work/downstream"
        cat <<CONF
a1.sources = r1
a1.sources.r1.type = avro
a1.sources.r1.bind = 127.0.0.1
a1.sources.r1.port = 47470
a1.sources.r1.channels = d1
a1.server.bind = 127.0.0.1:47471
a1.server.http = 127.0.0.1:47472
CONF
    } >"$work/downstream.conf"
    {
        cat <<CONF
a1.channels = m1
a1.channels.m1.type = memory
a1.channels.m1.capacity = 10000000
a1.channels.m1.transactionCapacity = 10000
a1.sinks = k1 k2 k3 k4
a1.server.bind = 127.0.0.1:47473
a1.server.http = 127.0.0.1:47474
CONF
        for sink in k1 k2 k3 k4; do
            cat <<CONF
a1.sinks.$sink.type = avro
a1.sinks.$sink.channel = m1
a1.sinks.$sink.hostname = 127.0.0.1
a1.sinks.$sink.port = 47470
a1.sinks.$sink.batch-size = 100
CONF
        done
    } >"$work/upstream.conf"
    start_server downstream
    wait_for_port 47470
    start_server upstream
    local started ended
    started=$(date +%s.%N)
    "$bin/channel-bench" --server 127.0.0.1:47473 --channel m1 --mode put --events "$events" \
        --producers 4 --batch 100 --pipeline 16 --json >"$work/fill.json"
    until [ "$(channel_size 47472 d1)" -ge "$events" ]; do sleep 0.05; done
    ended=$(date +%s.%N)
    printf 'sink     {"events":%s,"sinks":4,"batch":100,"size":256,"seconds":%s,"events_per_s":%s} fill=%s\n' \
        "$events" "$(echo "$ended - $started" | bc)" "$(echo "$events / ($ended - $started)" | bc)" \
        "$(cat "$work/fill.json")"
}

cases=("$@")
[ "${#cases[@]}" -gt 0 ] || cases=(source sink)
for case in "${cases[@]}"; do
    case "$case" in
        source) source_case ;;
        sink) sink_case ;;
        *) echo "unknown case $case" >&2; exit 2 ;;
    esac
done
