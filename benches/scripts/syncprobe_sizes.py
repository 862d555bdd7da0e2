# How the size of each synced write and the kind of preallocation change fdatasync's cost:
# for writes of 256 B, 2.75 KiB and 8 KiB (one event, a write round of about eight small
# commits, two pages), pwrite + fdatasync at consecutive offsets into a 64 MiB file that
# was either reserved with posix_fallocate (unwritten extents, converted by the first
# write to each page) or filled with zeros and synced (extents already written).
# Usage: python3 syncprobe_sizes.py PATH-ON-THE-DISK [SYNCS]
import os, sys, time

FILE_BYTES = 64 << 20
WRITE_SIZES_BYTES = (256, 2816, 8192)


def prepare(path, mode):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    if mode == "fallocate":
        os.posix_fallocate(fd, 0, FILE_BYTES)
    else:
        chunk = bytes(1 << 20)
        for _ in range(FILE_BYTES // len(chunk)):
            os.write(fd, chunk)
    os.fsync(fd)
    return fd


def probe(path, mode, size, syncs):
    fd = prepare(path, mode)
    payload = b"x" * size
    latencies = []
    started = time.perf_counter()
    for index in range(syncs):
        before = time.perf_counter()
        os.pwrite(fd, payload, index * size)
        os.fdatasync(fd)
        latencies.append(time.perf_counter() - before)
    elapsed = time.perf_counter() - started
    os.close(fd)
    os.unlink(path)
    latencies.sort()
    p50 = latencies[syncs // 2] * 1e6
    p99 = latencies[int(syncs * 0.99)] * 1e6
    print(f"{mode:9} {size:5} B  {syncs / elapsed:6.0f} syncs/s  p50 {p50:4.0f} us  p99 {p99:5.0f} us")


if __name__ == "__main__":
    target = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    for write_bytes in WRITE_SIZES_BYTES:
        for preallocation in ("fallocate", "zeros"):
            probe(target, preallocation, write_bytes, count)
