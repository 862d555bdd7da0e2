//! `SimFs`: an in-memory disk for power-loss and fault tests.
//!
//! Each file keeps two images: `live` (what reads see, like the page cache) and `durable`
//! (what survives a power loss), plus the list of writes issued since its last sync.
//! Directory entries are kept the same way: creates, renames and removes are live at once
//! and durable only after `sync_dir` on the parent. Directories themselves are durable as
//! soon as they are created (the engine creates them once, before any data exists).
//!
//! A crash is simulated in two steps. First, [`SimFsOptions::crash_after_ops`] makes the
//! N-th mutating operation and every later one fail with EIO, as if the process stopped
//! there. Then [`SimFs::crash_image`] builds the disk a restarted process would find:
//! - [`CrashMode::DropUnsynced`]: durable file contents and durable directory entries only;
//! - [`CrashMode::TornLastWrite`]: every entry that was created survives, and each file
//!   keeps a random prefix of its unsynced writes, the last one cut at a random byte;
//! - [`CrashMode::KeepUnsynced`]: everything written survives (a process crash, where the
//!   page cache outlives the process).
//!
//! Error injection: EIO on every sync from a given operation on (after which that file's
//! unsynced data is lost for good and reads see only the durable image, as on Linux after
//! a failed fsync), ENOSPC on writes, an errno for file creations, and a settable
//! free-space figure for the space guard — or a disk of a given size, whose free space
//! shrinks as files grow and which refuses growth beyond it with ENOSPC.
//!
//! Directories have an identity (like an inode number) given when they are created, so a
//! test can remove a directory ([`SimFs::remove_dir_all`]) or put a new one in its place
//! ([`SimFs::replace_dir`]) under a running channel. Permission bits are accepted and not
//! modelled.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::Rng;

use super::seam::{DirHandle, DirLock, DirMoved, FileIdentity, FileMode, Storage, StorageFile};

/// Free space SimFs reports unless a test sets another figure: plenty.
const DEFAULT_AVAILABLE_SPACE_BYTES: u64 = 1 << 40;

/// How a simulated power loss treats what was not synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Lose every unsynced write and every unsynced directory change.
    DropUnsynced,
    /// Keep every created entry; keep a random prefix of each file's unsynced writes with
    /// the last kept write torn at a random byte.
    TornLastWrite,
    /// Keep everything (process crash: the page cache survives).
    KeepUnsynced,
}

/// Fault injection settings.
#[derive(Debug, Clone)]
pub struct SimFsOptions {
    /// The mutating operation with this index (0-based) and all later ones fail with EIO,
    /// simulating a process that stopped at that point.
    pub crash_after_ops: Option<u64>,
    /// `sync_data` / `sync_all` fail with EIO from this mutating operation index on.
    pub fail_syncs_from_op: Option<u64>,
    /// Writes and allocations fail with ENOSPC.
    pub no_space: bool,
    /// Allocations that would grow a file by more than this many bytes fail with ENOSPC:
    /// a disk with a little room left, but not enough for a whole reservation.
    pub largest_allocation_bytes: Option<u64>,
    /// What `available_space_bytes` reports (unless `capacity_bytes` is set).
    pub available_space_bytes: u64,
    /// The disk's size: when set, free space is this less the bytes of every file, and
    /// writes, allocations and size changes that would need more fail with ENOSPC.
    pub capacity_bytes: Option<u64>,
    /// File creations fail with this errno (EACCES, EMFILE, …).
    pub create_errno: Option<i32>,
}

impl Default for SimFsOptions {
    fn default() -> Self {
        SimFsOptions {
            crash_after_ops: None,
            fail_syncs_from_op: None,
            no_space: false,
            largest_allocation_bytes: None,
            available_space_bytes: DEFAULT_AVAILABLE_SPACE_BYTES,
            capacity_bytes: None,
            create_errno: None,
        }
    }
}

/// The simulated disk. Cloning it gives another handle to the same disk.
#[derive(Debug, Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<SimState>>,
}

#[derive(Debug, Default)]
struct SimState {
    nodes: Vec<SimNode>,
    live_entries: BTreeMap<PathBuf, usize>,
    durable_entries: BTreeMap<PathBuf, usize>,
    /// Every directory with its identity.
    dirs: BTreeMap<PathBuf, u64>,
    /// The identity the next new directory gets.
    next_dir_identity: u64,
    locks: BTreeSet<PathBuf>,
    mutating_ops: u64,
    options: SimFsOptions,
}

#[derive(Debug, Default, Clone)]
struct SimNode {
    live: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<PendingOp>,
    sync_failed: bool,
}

#[derive(Debug, Clone)]
enum PendingOp {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

impl PendingOp {
    fn apply(&self, image: &mut Vec<u8>) {
        match self {
            PendingOp::Write { offset, data } => write_into(image, *offset, data),
            PendingOp::SetLen(len) => image.resize(*len as usize, 0),
        }
    }
}

fn write_into(image: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = offset as usize;
    let end = start + data.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[start..end].copy_from_slice(data);
}

fn no_space_error() -> io::Error {
    io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error())
}

fn simulated_crash_error() -> io::Error {
    io::Error::other("simulated crash: the process stopped before this operation")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} does not exist", path.display()),
    )
}

impl SimFs {
    /// An empty disk with the given fault settings.
    pub fn new(options: SimFsOptions) -> Self {
        let fs = SimFs::default();
        fs.lock().options = options;
        fs
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many mutating operations have been issued so far (including refused ones).
    pub fn mutating_ops(&self) -> u64 {
        self.lock().mutating_ops
    }

    /// Changes the fault settings.
    pub fn set_options(&self, options: SimFsOptions) {
        self.lock().options = options;
    }

    /// Changes the free space reported to the space guard.
    pub fn set_available_space_bytes(&self, bytes: u64) {
        self.lock().options.available_space_bytes = bytes;
    }

    /// Makes writes fail with ENOSPC (or stops doing so).
    pub fn set_no_space(&self, no_space: bool) {
        self.lock().options.no_space = no_space;
    }

    /// The disk a process restarted after a power loss (or process crash) would see.
    pub fn crash_image(&self, mode: CrashMode, rng: &mut impl Rng) -> SimFs {
        let state = self.lock();
        let entries = match mode {
            CrashMode::DropUnsynced => &state.durable_entries,
            CrashMode::TornLastWrite | CrashMode::KeepUnsynced => &state.live_entries,
        };
        let mut image = SimState {
            dirs: state.dirs.clone(),
            next_dir_identity: state.next_dir_identity,
            ..SimState::default()
        };
        for (path, &node_index) in entries {
            let node = &state.nodes[node_index];
            let content = match mode {
                CrashMode::DropUnsynced => node.durable.clone(),
                CrashMode::KeepUnsynced if node.sync_failed => node.durable.clone(),
                CrashMode::KeepUnsynced => node.live.clone(),
                CrashMode::TornLastWrite => torn_content(node, rng),
            };
            image.nodes.push(SimNode {
                live: content.clone(),
                durable: content,
                pending: Vec::new(),
                sync_failed: false,
            });
            let new_index = image.nodes.len() - 1;
            image.live_entries.insert(path.clone(), new_index);
            image.durable_entries.insert(path.clone(), new_index);
        }
        SimFs {
            state: Arc::new(Mutex::new(image)),
        }
    }

    /// Changes a file's bytes in place, in both its live and durable images (for
    /// corruption tests).
    pub fn modify_file(&self, path: &Path, change: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        let mut state = self.lock();
        let node_index = *state
            .live_entries
            .get(path)
            .ok_or_else(|| not_found(path))?;
        let node = &mut state.nodes[node_index];
        for op in node.pending.drain(..) {
            op.apply(&mut node.durable);
        }
        change(&mut node.durable);
        node.live = node.durable.clone();
        Ok(())
    }

    /// Removes a directory with everything in it, as `rm -rf` does. Files open elsewhere
    /// stay readable and writable through their handles. The removal is durable at once.
    pub fn remove_dir_all(&self, path: &Path) {
        let mut state = self.lock();
        state.dirs.retain(|dir, _| !dir.starts_with(path));
        state
            .live_entries
            .retain(|entry, _| !entry.starts_with(path));
        state
            .durable_entries
            .retain(|entry, _| !entry.starts_with(path));
        state.locks.retain(|lock| !lock.starts_with(path));
    }

    /// Removes a directory with everything in it and creates a new, empty one at the same
    /// path (`rm -rf DIR && mkdir DIR`): same path, another directory.
    pub fn replace_dir(&self, path: &Path) {
        self.remove_dir_all(path);
        let mut state = self.lock();
        state.add_dir(path);
    }

    /// The disk's free space, as `available_space_bytes` reports it.
    pub fn free_space_bytes(&self) -> u64 {
        self.lock().available_bytes()
    }

    /// A copy of a file's live bytes.
    pub fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = self.lock();
        let node_index = *state
            .live_entries
            .get(path)
            .ok_or_else(|| not_found(path))?;
        Ok(state.nodes[node_index].live.clone())
    }
}

fn torn_content(node: &SimNode, rng: &mut impl Rng) -> Vec<u8> {
    let mut content = node.durable.clone();
    if node.pending.is_empty() {
        return content;
    }
    let kept_whole = rng.random_range(0..node.pending.len());
    for op in &node.pending[..kept_whole] {
        op.apply(&mut content);
    }
    match &node.pending[kept_whole] {
        PendingOp::Write { offset, data } => {
            let kept_bytes = rng.random_range(0..=data.len());
            write_into(&mut content, *offset, &data[..kept_bytes]);
        }
        PendingOp::SetLen(len) => {
            if rng.random_bool(0.5) {
                content.resize(*len as usize, 0);
            }
        }
    }
    content
}

impl SimState {
    /// Adds a directory (a new identity) unless it exists.
    fn add_dir(&mut self, path: &Path) {
        if !self.dirs.contains_key(path) {
            self.next_dir_identity += 1;
            let identity = self.next_dir_identity;
            self.dirs.insert(path.to_path_buf(), identity);
        }
    }

    fn dir_exists(&self, path: &Path) -> io::Result<()> {
        if self.dirs.contains_key(path) {
            Ok(())
        } else {
            Err(not_found(path))
        }
    }

    /// Bytes held by files that have a name.
    fn used_bytes(&self) -> u64 {
        let named: BTreeSet<usize> = self.live_entries.values().copied().collect();
        named
            .into_iter()
            .map(|node| self.nodes[node].live.len() as u64)
            .sum()
    }

    fn available_bytes(&self) -> u64 {
        match self.options.capacity_bytes {
            Some(capacity) => capacity.saturating_sub(self.used_bytes()),
            None => self.options.available_space_bytes,
        }
    }

    /// Counts a mutating operation and fails it if the simulated process has stopped.
    fn begin_mutation(&mut self) -> io::Result<u64> {
        let op_index = self.mutating_ops;
        self.mutating_ops += 1;
        match self.options.crash_after_ops {
            Some(limit) if op_index >= limit => Err(simulated_crash_error()),
            _ => Ok(op_index),
        }
    }

    fn node_for(&self, path: &Path) -> io::Result<usize> {
        self.live_entries
            .get(path)
            .copied()
            .ok_or_else(|| not_found(path))
    }

    fn parent_exists(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() && !self.dirs.contains_key(parent) => {
                Err(not_found(parent))
            }
            _ => Ok(()),
        }
    }
}

#[derive(Debug)]
struct SimFile {
    fs: SimFs,
    node: usize,
}

#[derive(Debug)]
struct SimLock {
    fs: SimFs,
    path: PathBuf,
}

impl DirLock for SimLock {}

#[derive(Debug)]
struct SimDir {
    fs: SimFs,
    path: PathBuf,
    identity: u64,
}

fn sim_identity(identity: u64) -> FileIdentity {
    FileIdentity {
        device: 0,
        inode: identity,
    }
}

impl DirHandle for SimDir {
    fn path(&self) -> &Path {
        &self.path
    }

    fn verify(&self) -> Result<(), DirMoved> {
        match self.fs.lock().dirs.get(&self.path) {
            None => Err(DirMoved::Missing(not_found(&self.path))),
            Some(&identity) if identity == self.identity => Ok(()),
            Some(&identity) => Err(DirMoved::Replaced {
                opened: sim_identity(self.identity),
                now: sim_identity(identity),
            }),
        }
    }
}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.fs.lock().locks.remove(&self.path);
    }
}

impl Storage for SimFs {
    fn create_dir_all(&self, path: &Path, _mode: FileMode) -> io::Result<()> {
        let mut state = self.lock();
        for ancestor in path.ancestors() {
            if !ancestor.as_os_str().is_empty() {
                state.add_dir(ancestor);
            }
        }
        Ok(())
    }

    fn open_dir(&self, path: &Path) -> io::Result<Box<dyn DirHandle>> {
        let identity = *self.lock().dirs.get(path).ok_or_else(|| not_found(path))?;
        Ok(Box::new(SimDir {
            fs: self.clone(),
            path: path.to_path_buf(),
            identity,
        }))
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let state = self.lock();
        state.dir_exists(path)?;
        let mut names: Vec<String> = state
            .live_entries
            .keys()
            .filter(|entry| entry.parent() == Some(path))
            .filter_map(|entry| entry.file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    fn create_file(&self, path: &Path, _mode: FileMode) -> io::Result<Arc<dyn StorageFile>> {
        let mut state = self.lock();
        state.begin_mutation()?;
        if let Some(errno) = state.options.create_errno {
            return Err(io::Error::from_raw_os_error(errno));
        }
        state.parent_exists(path)?;
        if state.live_entries.contains_key(path) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} already exists", path.display()),
            ));
        }
        state.nodes.push(SimNode::default());
        let node = state.nodes.len() - 1;
        state.live_entries.insert(path.to_path_buf(), node);
        Ok(Arc::new(SimFile {
            fs: self.clone(),
            node,
        }))
    }

    fn open_file(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let node = self.lock().node_for(path)?;
        Ok(Arc::new(SimFile {
            fs: self.clone(),
            node,
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.begin_mutation()?;
        state.node_for(path)?;
        state.live_entries.remove(path);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.begin_mutation()?;
        let node = state.node_for(from)?;
        state.live_entries.remove(from);
        state.live_entries.insert(to.to_path_buf(), node);
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.begin_mutation()?;
        state.dir_exists(path)?;
        let in_dir = |entry: &PathBuf| entry.parent() == Some(path);
        state.durable_entries.retain(|entry, _| !in_dir(entry));
        let live: Vec<(PathBuf, usize)> = state
            .live_entries
            .iter()
            .filter(|(entry, _)| in_dir(entry))
            .map(|(entry, &node)| (entry.clone(), node))
            .collect();
        state.durable_entries.extend(live);
        Ok(())
    }

    fn available_space_bytes(&self, path: &Path) -> io::Result<u64> {
        let state = self.lock();
        state.dir_exists(path)?;
        Ok(state.available_bytes())
    }

    fn lock_file(&self, lock_file: &Path, _mode: FileMode) -> io::Result<Box<dyn DirLock>> {
        let mut state = self.lock();
        if !state.locks.insert(lock_file.to_path_buf()) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "lock held by another open file",
            ));
        }
        Ok(Box::new(SimLock {
            fs: self.clone(),
            path: lock_file.to_path_buf(),
        }))
    }
}

impl SimFile {
    fn mutate(&self, op: PendingOp) -> io::Result<()> {
        let mut state = self.fs.lock();
        state.begin_mutation()?;
        if state.options.no_space && !matches!(op, PendingOp::SetLen(_)) {
            return Err(no_space_error());
        }
        if let Some(capacity) = state.options.capacity_bytes {
            let current = state.nodes[self.node].live.len() as u64;
            let new_len = match &op {
                PendingOp::Write { offset, data } => current.max(offset + data.len() as u64),
                PendingOp::SetLen(len) => *len,
            };
            if new_len > current && state.used_bytes() + (new_len - current) > capacity {
                return Err(no_space_error());
            }
        }
        let node = &mut state.nodes[self.node];
        op.apply(&mut node.live);
        node.pending.push(op);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let mut state = self.fs.lock();
        let op_index = state.begin_mutation()?;
        let fail = matches!(state.options.fail_syncs_from_op, Some(from) if op_index >= from);
        let node = &mut state.nodes[self.node];
        if fail {
            // Linux marks the failed pages clean: their data never reaches the disk.
            node.pending.clear();
            node.sync_failed = true;
            return Err(io::Error::from_raw_os_error(
                rustix::io::Errno::IO.raw_os_error(),
            ));
        }
        for op in std::mem::take(&mut node.pending) {
            op.apply(&mut node.durable);
        }
        Ok(())
    }
}

impl StorageFile for SimFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.mutate(PendingOp::Write {
            offset,
            data: buf.to_vec(),
        })
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let state = self.fs.lock();
        let node = &state.nodes[self.node];
        let image = if node.sync_failed {
            &node.durable
        } else {
            &node.live
        };
        let start = (offset as usize).min(image.len());
        let read = buf.len().min(image.len() - start);
        buf[..read].copy_from_slice(&image[start..start + read]);
        Ok(read)
    }

    /// The simulated disk lives in memory: every read is a cached one.
    fn read_exact_cached_at(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        self.read_exact_at(buf, offset).map(|()| true)
    }

    fn len_bytes(&self) -> io::Result<u64> {
        let state = self.fs.lock();
        let node = &state.nodes[self.node];
        Ok(if node.sync_failed {
            node.durable.len()
        } else {
            node.live.len()
        } as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.mutate(PendingOp::SetLen(len))
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let current = self.len_bytes()?;
        if len <= current {
            return Ok(());
        }
        let mut state = self.fs.lock();
        let too_large = state
            .options
            .largest_allocation_bytes
            .is_some_and(|largest| len - current > largest);
        if state.options.no_space || too_large {
            state.begin_mutation()?;
            return Err(no_space_error());
        }
        drop(state);
        self.mutate(PendingOp::SetLen(len))
    }

    fn sync_data(&self) -> io::Result<()> {
        self.sync()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn setup() -> (SimFs, PathBuf) {
        let fs = SimFs::default();
        let dir = PathBuf::from("/d");
        fs.create_dir_all(&dir, FileMode::PRIVATE).unwrap();
        (fs, dir)
    }

    #[test]
    fn unsynced_writes_are_lost_on_power_loss_and_synced_ones_survive() {
        let (fs, dir) = setup();
        let path = dir.join("f");
        let file = fs.create_file(&path, FileMode::PRIVATE).unwrap();
        fs.sync_dir(&dir).unwrap();
        file.write_all_at(b"durable", 0).unwrap();
        file.sync_data().unwrap();
        file.write_all_at(b"-lost", 7).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let image = fs.crash_image(CrashMode::DropUnsynced, &mut rng);
        assert_eq!(image.read_file(&path).unwrap(), b"durable");
        let kept = fs.crash_image(CrashMode::KeepUnsynced, &mut rng);
        assert_eq!(kept.read_file(&path).unwrap(), b"durable-lost");
    }

    #[test]
    fn a_created_file_vanishes_on_power_loss_until_its_directory_is_synced() {
        let (fs, dir) = setup();
        let path = dir.join("f");
        let file = fs.create_file(&path, FileMode::PRIVATE).unwrap();
        file.write_all_at(b"x", 0).unwrap();
        file.sync_data().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let image = fs.crash_image(CrashMode::DropUnsynced, &mut rng);
        assert!(image.read_file(&path).is_err());
        fs.sync_dir(&dir).unwrap();
        let image = fs.crash_image(CrashMode::DropUnsynced, &mut rng);
        assert_eq!(image.read_file(&path).unwrap(), b"x");
    }

    #[test]
    fn operations_after_the_crash_point_fail_and_change_nothing() {
        let (fs, dir) = setup();
        let file = fs.create_file(&dir.join("f"), FileMode::PRIVATE).unwrap();
        fs.set_options(SimFsOptions {
            crash_after_ops: Some(fs.mutating_ops()),
            ..SimFsOptions::default()
        });
        assert!(file.write_all_at(b"x", 0).is_err());
        assert_eq!(file.len_bytes().unwrap(), 0);
    }

    #[test]
    fn a_failed_sync_loses_the_unsynced_data_for_good() {
        let (fs, dir) = setup();
        let file = fs.create_file(&dir.join("f"), FileMode::PRIVATE).unwrap();
        file.write_all_at(b"abc", 0).unwrap();
        fs.set_options(SimFsOptions {
            fail_syncs_from_op: Some(0),
            ..SimFsOptions::default()
        });
        let error = file.sync_data().unwrap_err();
        assert_eq!(
            error.raw_os_error(),
            Some(rustix::io::Errno::IO.raw_os_error())
        );
        let mut buf = [0u8; 3];
        assert_eq!(file.read_at(&mut buf, 0).unwrap(), 0);
    }

    #[test]
    fn torn_images_keep_a_prefix_of_the_unsynced_writes() {
        let (fs, dir) = setup();
        let path = dir.join("f");
        let file = fs.create_file(&path, FileMode::PRIVATE).unwrap();
        fs.sync_dir(&dir).unwrap();
        file.write_all_at(b"0123456789", 0).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..50 {
            let image = fs.crash_image(CrashMode::TornLastWrite, &mut rng);
            let content = image.read_file(&path).unwrap();
            assert!(b"0123456789".starts_with(&content));
        }
    }

    #[test]
    fn a_held_directory_notices_its_removal_and_its_replacement() {
        let (fs, dir) = setup();
        let held = fs.open_dir(&dir).unwrap();
        let file = fs.create_file(&dir.join("f"), FileMode::PRIVATE).unwrap();
        assert!(held.verify().is_ok());
        fs.remove_dir_all(&dir);
        assert!(matches!(held.verify(), Err(DirMoved::Missing(_))));
        assert!(fs.list_dir(&dir).is_err());
        assert!(fs.sync_dir(&dir).is_err());
        file.write_all_at(b"still writable", 0).unwrap();
        fs.create_dir_all(&dir, FileMode::PRIVATE).unwrap();
        assert!(matches!(held.verify(), Err(DirMoved::Replaced { .. })));
        let again = fs.open_dir(&dir).unwrap();
        fs.replace_dir(&dir);
        assert!(matches!(again.verify(), Err(DirMoved::Replaced { .. })));
    }

    #[test]
    fn a_disk_of_a_given_size_refuses_growth_beyond_it_and_reports_what_is_left() {
        let fs = SimFs::new(SimFsOptions {
            capacity_bytes: Some(100),
            ..SimFsOptions::default()
        });
        let dir = PathBuf::from("/d");
        fs.create_dir_all(&dir, FileMode::PRIVATE).unwrap();
        let file = fs.create_file(&dir.join("f"), FileMode::PRIVATE).unwrap();
        file.allocate(60).unwrap();
        assert_eq!(fs.available_space_bytes(&dir).unwrap(), 40);
        file.write_all_at(b"within the allocation", 0).unwrap();
        assert_eq!(fs.free_space_bytes(), 40);
        let error = file.allocate(101).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::StorageFull);
        file.set_len(10).unwrap();
        assert_eq!(fs.free_space_bytes(), 90);
    }

    #[test]
    fn a_second_lock_on_the_same_file_is_refused_until_the_first_is_dropped() {
        let (fs, dir) = setup();
        let lock = fs.lock_file(&dir.join("lock"), FileMode::PRIVATE).unwrap();
        assert_eq!(
            fs.lock_file(&dir.join("lock"), FileMode::PRIVATE)
                .unwrap_err()
                .kind(),
            io::ErrorKind::WouldBlock
        );
        drop(lock);
        assert!(fs.lock_file(&dir.join("lock"), FileMode::PRIVATE).is_ok());
    }
}
