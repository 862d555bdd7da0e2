# The physical reference for docs/perf.md: 3,000 × (256-byte pwrite + fdatasync) on a
# 16 MiB file preallocated with fallocate. Usage: python3 syncprobe.py PATH-ON-THE-DISK
import os, time, sys
path = sys.argv[1]
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
os.posix_fallocate(fd, 0, 16 << 20)
os.fsync(fd)
buf = b"x" * 256
lat = []
start = time.perf_counter()
for i in range(3000):
    t = time.perf_counter()
    os.pwrite(fd, buf, i * 256)
    os.fdatasync(fd)
    lat.append(time.perf_counter() - t)
total = time.perf_counter() - start
lat.sort()
print(f"{3000/total:.0f} syncs/s p50 {lat[1500]*1e6:.0f} us p99 {lat[2970]*1e6:.0f} us")
os.close(fd); os.unlink(path)
