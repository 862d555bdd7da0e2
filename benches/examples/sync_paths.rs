//! The ways a log writer can make one small append durable, side by side on the same disk.
//!
//! ```text
//! cargo run --release -p millrace-benches --example sync_paths -- [--dir DIR] [--appends N] [--append-bytes B] [--rounds R]
//! ```
//!
//! Each variant appends `--append-bytes` at a time to its own file and makes every append
//! durable before the next, as a lone committer does:
//!
//! - `pwrite`: `pwrite` then `fdatasync` (Millrace's fallback);
//! - `uring`: a write linked to an `fdatasync` in one io_uring submission (Millrace's
//!   writer);
//! - `uring-fixed-file`: the same with the file registered on the ring;
//! - `uring-fixed-file-buffer`: the same with the buffer registered too (`WRITE_FIXED`);
//! - `direct-uring`: `O_DIRECT`, rewriting the whole 4 KiB block that holds the tail at
//!   each append, linked to an `fdatasync`;
//! - `direct-dsync`: `O_DIRECT | O_DSYNC`, the same block rewrite as one `pwrite` (the
//!   kernel may use a FUA write instead of a cache flush).
//!
//! Every variant runs on two kinds of file: `fresh`, preallocated with `fallocate` (what a
//! new segment is: its extents are unwritten, so the first sync of each new block also
//! converts the extent) and `written`, filled with zeros and synced beforehand (what a
//! recycled segment would be). The variants take turns for `--rounds` rounds so that the
//! disk's swings spread over all of them. Reported per variant: appends per second, sync
//! latency percentiles, and the CPU time per append (`getrusage`: the process, so the
//! kernel's io_uring worker threads that run punted syncs are counted too).

// Registered io_uring buffers, O_DIRECT's aligned allocations and getrusage need
// `unsafe`; each block says why it is sound.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use io_uring::{opcode, squeue, types, IoUring};

/// The block size `O_DIRECT` writes must be aligned to (and the page size here).
const BLOCK_BYTES: usize = 4096;
const RING_ENTRIES: u32 = 4;
const HISTOGRAM_MAX_MICROS: u64 = 10_000_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    Pwrite,
    Uring,
    UringFixedFile,
    UringFixedFileBuffer,
    DirectUring,
    DirectDsync,
}

impl Variant {
    const ALL: [Variant; 6] = [
        Variant::Pwrite,
        Variant::Uring,
        Variant::UringFixedFile,
        Variant::UringFixedFileBuffer,
        Variant::DirectUring,
        Variant::DirectDsync,
    ];

    fn name(self) -> &'static str {
        match self {
            Variant::Pwrite => "pwrite",
            Variant::Uring => "uring",
            Variant::UringFixedFile => "uring-fixed-file",
            Variant::UringFixedFileBuffer => "uring-fixed-file-buffer",
            Variant::DirectUring => "direct-uring",
            Variant::DirectDsync => "direct-dsync",
        }
    }

    fn is_direct(self) -> bool {
        matches!(self, Variant::DirectUring | Variant::DirectDsync)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum FileState {
    Fresh,
    Written,
}

impl FileState {
    fn name(self) -> &'static str {
        match self {
            FileState::Fresh => "fresh",
            FileState::Written => "written",
        }
    }
}

struct Options {
    dir: PathBuf,
    appends_per_round: u64,
    append_bytes: usize,
    rounds: u32,
}

fn parse_options() -> Options {
    let mut options = Options {
        dir: std::env::current_dir()
            .expect("current dir")
            .join("target/sync-paths"),
        appends_per_round: 1_000,
        append_bytes: 256,
        rounds: 5,
    };
    let mut arguments = std::env::args().skip(1);
    while let Some(flag) = arguments.next() {
        let mut value = || {
            arguments
                .next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--dir" => options.dir = PathBuf::from(value()),
            "--appends" => options.appends_per_round = value().parse().expect("--appends N"),
            "--append-bytes" => options.append_bytes = value().parse().expect("--append-bytes B"),
            "--rounds" => options.rounds = value().parse().expect("--rounds R"),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        options.append_bytes > 0 && options.append_bytes <= BLOCK_BYTES,
        "--append-bytes must be 1 to {BLOCK_BYTES}"
    );
    options
}

/// A heap buffer aligned for `O_DIRECT`.
struct AlignedBlock {
    layout: std::alloc::Layout,
    pointer: *mut u8,
}

impl AlignedBlock {
    fn zeroed() -> Self {
        let layout = std::alloc::Layout::from_size_align(BLOCK_BYTES, BLOCK_BYTES).unwrap();
        // SAFETY: the layout has a non-zero size.
        let pointer = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!pointer.is_null(), "allocation of one block failed");
        AlignedBlock { layout, pointer }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the allocation is BLOCK_BYTES long and owned by self.
        unsafe { std::slice::from_raw_parts_mut(self.pointer, BLOCK_BYTES) }
    }
}

impl Drop for AlignedBlock {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this layout.
        unsafe { std::alloc::dealloc(self.pointer, self.layout) }
    }
}

struct Tally {
    latency_micros: Histogram<u64>,
    appends: u64,
    wall: Duration,
    cpu_nanos: u64,
}

impl Tally {
    fn new() -> Self {
        Tally {
            latency_micros: Histogram::new_with_max(HISTOGRAM_MAX_MICROS, 3).unwrap(),
            appends: 0,
            wall: Duration::ZERO,
            cpu_nanos: 0,
        }
    }
}

/// Nanoseconds of CPU the process has used, user and system, including the kernel's
/// io_uring worker threads (they belong to the process), even those that have exited.
fn process_cpu_nanos() -> u64 {
    // SAFETY: getrusage writes into the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let nanos =
        |time: libc::timeval| time.tv_sec as u64 * 1_000_000_000 + time.tv_usec as u64 * 1_000;
    nanos(usage.ru_utime) + nanos(usage.ru_stime)
}

fn prepare_file(path: &Path, state: FileState, file_bytes: u64) -> io::Result<()> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)?;
    match state {
        FileState::Fresh => {
            rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, file_bytes)?
        }
        FileState::Written => {
            let zeros = vec![0u8; 1 << 20];
            let mut offset = 0;
            while offset < file_bytes {
                let length = zeros.len().min((file_bytes - offset) as usize);
                file.write_all_at(&zeros[..length], offset)?;
                offset += length as u64;
            }
        }
    }
    file.sync_all()
}

fn open_for(variant: Variant, path: &Path) -> io::Result<File> {
    let mut flags = 0;
    if variant.is_direct() {
        flags |= rustix::fs::OFlags::DIRECT.bits() as i32;
    }
    if variant == Variant::DirectDsync {
        flags |= rustix::fs::OFlags::DSYNC.bits() as i32;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(flags)
        .open(path)
}

/// The file a submission names: its descriptor, or its slot among the ring's registered
/// files.
#[derive(Clone, Copy)]
enum RingFile {
    Descriptor(types::Fd),
    Registered(types::Fixed),
}

/// Links `write` to an `fdatasync` of `file` and waits for both.
fn submit_write_and_sync(ring: &mut IoUring, write: squeue::Entry, file: RingFile) {
    let write = write.flags(squeue::Flags::IO_LINK).user_data(1);
    let sync = match file {
        RingFile::Descriptor(fd) => opcode::Fsync::new(fd),
        RingFile::Registered(fixed) => opcode::Fsync::new(fixed),
    }
    .flags(types::FsyncFlags::DATASYNC)
    .build()
    .user_data(2);
    submit_pair(ring, write, sync);
}

fn submit_pair(ring: &mut IoUring, write: squeue::Entry, sync: squeue::Entry) {
    // SAFETY: the caller keeps the written buffer alive until `submit_and_wait` below has
    // returned both completions.
    unsafe {
        let mut queue = ring.submission();
        queue.push(&write).expect("room for the write");
        queue.push(&sync).expect("room for the sync");
    }
    ring.submit_and_wait(2).expect("io_uring_enter");
    for completion in ring.completion() {
        assert!(
            completion.result() >= 0,
            "io_uring operation {} failed: {}",
            completion.user_data(),
            io::Error::from_raw_os_error(-completion.result())
        );
    }
}

/// Appends `options.appends_per_round` times, starting at `start_offset`, each made
/// durable before the next; returns the next offset.
fn run_round(
    variant: Variant,
    file: &File,
    ring: &mut IoUring,
    block: &mut AlignedBlock,
    start_offset: u64,
    options: &Options,
    tally: &mut Tally,
) -> io::Result<u64> {
    let append = vec![0x5au8; options.append_bytes];
    let fd = types::Fd(file.as_raw_fd());
    let block_pointer = block.pointer;
    let mut offset = start_offset;
    let cpu_before = process_cpu_nanos();
    let round_started = Instant::now();
    for _ in 0..options.appends_per_round {
        let started = Instant::now();
        if variant.is_direct() {
            // The block that holds the tail, rewritten whole with the new bytes in it.
            let block_offset = offset - offset % BLOCK_BYTES as u64;
            let within = (offset - block_offset) as usize;
            if within + append.len() > BLOCK_BYTES {
                // The append would cross into the next block: start that block instead
                // (a log would pad the rest of this one).
                block.bytes_mut().fill(0);
                offset = block_offset + BLOCK_BYTES as u64;
                continue;
            }
            block.bytes_mut()[within..within + append.len()].copy_from_slice(&append);
            if variant == Variant::DirectDsync {
                file.write_all_at(block.bytes_mut(), block_offset)?;
            } else {
                let write = opcode::Write::new(fd, block_pointer, BLOCK_BYTES as u32)
                    .offset(block_offset)
                    .build();
                submit_write_and_sync(ring, write, RingFile::Descriptor(fd));
            }
        } else {
            match variant {
                Variant::Pwrite => {
                    file.write_all_at(&append, offset)?;
                    file.sync_data()?;
                }
                Variant::Uring => {
                    let write = opcode::Write::new(fd, append.as_ptr(), append.len() as u32)
                        .offset(offset)
                        .build();
                    submit_write_and_sync(ring, write, RingFile::Descriptor(fd));
                }
                Variant::UringFixedFile => {
                    let fixed = types::Fixed(0);
                    let write = opcode::Write::new(fixed, append.as_ptr(), append.len() as u32)
                        .offset(offset)
                        .build();
                    submit_write_and_sync(ring, write, RingFile::Registered(fixed));
                }
                Variant::UringFixedFileBuffer => {
                    let fixed = types::Fixed(0);
                    // The registered buffer is the aligned block; its first bytes carry
                    // the append.
                    let write =
                        opcode::WriteFixed::new(fixed, block_pointer, append.len() as u32, 0)
                            .offset(offset)
                            .build();
                    submit_write_and_sync(ring, write, RingFile::Registered(fixed));
                }
                Variant::DirectUring | Variant::DirectDsync => unreachable!("handled above"),
            }
        }
        offset += append.len() as u64;
        let micros = started.elapsed().as_micros() as u64;
        tally
            .latency_micros
            .record(micros.clamp(1, HISTOGRAM_MAX_MICROS))
            .unwrap();
        tally.appends += 1;
    }
    tally.wall += round_started.elapsed();
    tally.cpu_nanos += process_cpu_nanos().saturating_sub(cpu_before);
    Ok(offset)
}

struct Lane {
    variant: Variant,
    state: FileState,
    file: File,
    ring: IoUring,
    block: AlignedBlock,
    offset: u64,
    tally: Tally,
}

fn open_lane(
    variant: Variant,
    state: FileState,
    options: &Options,
    file_bytes: u64,
) -> io::Result<Lane> {
    let path = options
        .dir
        .join(format!("{}-{}.log", variant.name(), state.name()));
    prepare_file(&path, state, file_bytes)?;
    let file = open_for(variant, &path)?;
    let ring = IoUring::new(RING_ENTRIES)?;
    let mut block = AlignedBlock::zeroed();
    if matches!(
        variant,
        Variant::UringFixedFile | Variant::UringFixedFileBuffer
    ) {
        ring.submitter().register_files(&[file.as_raw_fd()])?;
    }
    if variant == Variant::UringFixedFileBuffer {
        let bytes = block.bytes_mut();
        let iovec = libc::iovec {
            iov_base: bytes.as_mut_ptr().cast(),
            iov_len: bytes.len(),
        };
        // SAFETY: the block lives as long as the lane, and with it the ring; the ring is
        // dropped first (field order) so the registration never outlives the memory.
        unsafe { ring.submitter().register_buffers(&[iovec])? };
    }
    Ok(Lane {
        variant,
        state,
        file,
        ring,
        block,
        offset: 0,
        tally: Tally::new(),
    })
}

fn main() -> io::Result<()> {
    let options = parse_options();
    std::fs::create_dir_all(&options.dir)?;
    // Enough room for every round's appends plus a block of slack for the direct
    // variants' padding.
    let appends_total = options.appends_per_round * u64::from(options.rounds);
    let file_bytes = (appends_total * options.append_bytes as u64 * 2).max(1 << 20);
    let mut lanes = Vec::new();
    for state in [FileState::Fresh, FileState::Written] {
        for variant in Variant::ALL {
            lanes.push(open_lane(variant, state, &options, file_bytes)?);
        }
    }
    println!(
        "{} appends of {} bytes per variant and file ({} rounds), files in {}",
        appends_total,
        options.append_bytes,
        options.rounds,
        options.dir.display()
    );
    for _ in 0..options.rounds {
        for lane in lanes.iter_mut() {
            lane.offset = run_round(
                lane.variant,
                &lane.file,
                &mut lane.ring,
                &mut lane.block,
                lane.offset,
                &options,
                &mut lane.tally,
            )?;
        }
    }
    println!(
        "{:<26} {:<8} {:>10} {:>8} {:>8} {:>9} {:>12}",
        "variant", "file", "appends/s", "p50_us", "p99_us", "p999_us", "cpu_us/app"
    );
    for lane in &lanes {
        let tally = &lane.tally;
        let rate = tally.appends as f64 / tally.wall.as_secs_f64();
        println!(
            "{:<26} {:<8} {:>10.0} {:>8} {:>8} {:>9} {:>12.1}",
            lane.variant.name(),
            lane.state.name(),
            rate,
            tally.latency_micros.value_at_quantile(0.50),
            tally.latency_micros.value_at_quantile(0.99),
            tally.latency_micros.value_at_quantile(0.999),
            tally.cpu_nanos as f64 / 1_000.0 / tally.appends.max(1) as f64,
        );
    }
    for lane in &lanes {
        let path = options
            .dir
            .join(format!("{}-{}.log", lane.variant.name(), lane.state.name()));
        std::fs::remove_file(path)?;
    }
    Ok(())
}
