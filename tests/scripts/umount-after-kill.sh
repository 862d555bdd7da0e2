#!/bin/bash
# How often, and for how long, a data filesystem stays busy after `kill -9` of channeld.
#
# Each cycle mounts a fresh loop ext4 image, starts channeld on it, puts batches of 1 from
# 8 producers, kills channeld with SIGKILL, waits for it to be reaped, then unmounts at
# once, trying again every 10 ms while the mount is busy.
#
# Usage (root, with losetup and mkfs.ext4):
#   cargo build -p millrace-server -p millrace-tools
#   CYCLES=20 BACKEND=io_uring tests/scripts/umount-after-kill.sh
#   CYCLES=20 BACKEND=pwrite   tests/scripts/umount-after-kill.sh
set -u
BIN_DIR=${BIN_DIR:-$(dirname "$0")/../../target/debug}
CYCLES=${CYCLES:-20}
BACKEND=${BACKEND:-io_uring}
PROTOCOL_ADDRESS=127.0.0.1:47771
HTTP_ADDRESS=127.0.0.1:47772
IMAGE_SIZE=64M
RETRY_INTERVAL_SECONDS=0.01

work=$(mktemp -d /tmp/umount-after-kill-XXXXXX)
trap 'umount -l "$work/mnt" 2>/dev/null; rm -rf "$work"' EXIT
truncate -s "$IMAGE_SIZE" "$work/image"
mkfs.ext4 -q "$work/image"
mkdir "$work/mnt"
busy_cycles=0
for cycle in $(seq 1 "$CYCLES"); do
  device=$(losetup --find --show "$work/image")
  mount -t ext4 "$device" "$work/mnt"
  cat > "$work/conf" <<CONF
a.channels = c1
a.channels.c1.type = file
a.channels.c1.checkpointDir = $work/mnt/checkpoint
a.channels.c1.dataDirs = $work/mnt/data-1,$work/mnt/data-2
a.channels.c1.maxFileSize = 8192
a.channels.c1.minimumRequiredSpace = 1048576
a.channels.c1.capacity = 100000000
a.server.ioBackend = $BACKEND
CONF
  "$BIN_DIR/channeld" -f "$work/conf" -n a --bind "$PROTOCOL_ADDRESS" --http "$HTTP_ADDRESS" \
    > "$work/channeld.log" 2>&1 &
  server=$!
  for _ in $(seq 50); do
    curl -sf "http://$HTTP_ADDRESS/health" > /dev/null && break
    sleep 0.1
  done
  "$BIN_DIR/channel-bench" --server "$PROTOCOL_ADDRESS" --channel c1 --mode put \
    --events 10000000 --size 256 --batch 1 --producers 8 > /dev/null 2>&1 &
  bench=$!
  sleep "0.$((RANDOM % 5 + 3))"
  kill -9 "$server"
  wait "$server" 2> /dev/null
  started_ns=$(date +%s%N)
  busy_tries=0
  until umount "$work/mnt" 2> /dev/null; do
    busy_tries=$((busy_tries + 1))
    sleep "$RETRY_INTERVAL_SECONDS"
  done
  elapsed_ms=$((($(date +%s%N) - started_ns) / 1000000))
  [ "$busy_tries" -gt 0 ] && busy_cycles=$((busy_cycles + 1))
  echo "cycle $cycle: unmounted after $elapsed_ms ms ($busy_tries busy tries)"
  kill "$bench" 2> /dev/null
  wait "$bench" 2> /dev/null
  losetup --detach "$device"
done
echo "backend $BACKEND: busy right after the kill in $busy_cycles of $CYCLES cycles"
