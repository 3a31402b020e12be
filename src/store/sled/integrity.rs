//! What the store holds, counted, so that a damaged store is refused instead of served.
//!
//! sled answers a damaged log by recovering an earlier state, often an empty one, without
//! a word: a daemon that then wrote on would overwrite what a backup or a careful copy
//! could still give back. So the store keeps two records of its size:
//!
//! - [`Counts`] in the `meta` tree, changed in the same transaction as every write that adds
//!   or removes a reference, watch, product, queued message or dead letter, with a
//!   generation that grows with each such transaction;
//! - the checkpoint file [`CHECKPOINT_FILE`] beside sled's files, the counts as of the last
//!   flush that made them durable (written after that flush, atomically), because a log
//!   rolled back to an earlier state rolls back the counts inside it too.
//!
//! At open, [`inspect`] checks a scratch copy of the directory (sled's recovery writes into
//! the files it opens, so the real ones are opened only once the copy passed), and
//! [`compare`], the pure rule, says what is missing.
//!
//! Copying costs as much as the data: about 20 s for the 2.7 GB of a million watches. So a
//! store that closes cleanly leaves [`CLOSED_FILE`] once sled has let go of its files: its
//! final counts and each file's size, modification time and inode. At the next open, when
//! every file is still as it was described ([`closed`]), the marker is removed and the real
//! files are opened without a copy; only the counts they recorded are compared with the
//! ones closed ([`compare_closed`]). A copy check that finds damage removes the marker, so
//! that no later start skips the check; otherwise a refused store is left as it was. A
//! store refused by `compare_closed` has been opened by sled already (its recovery may have
//! written): that is the price of the shortcut. What that gives up: damage that happens to files at
//! rest without touching their size or times (a failing disk) is seen only after sled has
//! opened them, not before. A crash, a kill or a file replaced or written since leaves no
//! valid marker, and the copy is checked as before; `storage.full_check_at_start` asks for
//! it every time.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::io;
use crate::store::StoreError;

/// The checkpoint's name in the data directory.
pub const CHECKPOINT_FILE: &str = "pricewatch.state";

/// Beside the checkpoint (and skipped with it by the copy): written once a store closed
/// cleanly, removed when it opens.
pub const CLOSED_FILE: &str = "pricewatch.state.closed";

/// The counts' key in the `meta` tree.
pub(super) const COUNTS_KEY: &[u8] = b"counts";

/// The trees counted, in the order [`Counts`] encodes them.
pub(super) const COUNTED: [&str; 5] = [
    "references",
    "watches",
    "products",
    "outbox",
    "dead_letters",
];

/// Counted with "outbox": the messages whose next attempt was put off (`due`).
pub(super) const OUTBOX_WAITING: &str = "outbox_waiting";

/// What a person calls them, in the same order.
const SHOWN: [&str; 5] = [
    "conversations",
    "watches",
    "products",
    "queued messages",
    "dead letters",
];

/// How many records each counted tree holds, and how many counted changes made them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Grows by one with every transaction that changes a count: a store rolled back to an
    /// earlier state shows a smaller generation than a checkpoint written after it.
    pub generation: u64,
    /// One per counted tree: conversations, watches, products, queued messages, dead
    /// letters, in that order.
    pub trees: [u64; 5],
}

impl Counts {
    pub(super) fn encode(&self) -> Vec<u8> {
        std::iter::once(self.generation)
            .chain(self.trees)
            .flat_map(u64::to_be_bytes)
            .collect()
    }

    /// `None` for anything but the 48 bytes [`Counts::encode`] writes.
    pub(super) fn decode(bytes: &[u8]) -> Option<Counts> {
        if bytes.len() != 8 * 6 {
            return None;
        }
        let mut values = bytes
            .chunks_exact(8)
            .map(|c| <[u8; 8]>::try_from(c).map(u64::from_be_bytes).unwrap_or(0));
        let generation = values.next()?;
        let mut trees = [0; 5];
        for (slot, v) in trees.iter_mut().zip(values) {
            *slot = v;
        }
        Some(Counts { generation, trees })
    }

    /// "N watches, …", for a person.
    pub fn summary(&self) -> String {
        SHOWN
            .iter()
            .zip(self.trees)
            .map(|(name, n)| format!("{n} {name}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The checkpoint file's text: one `name value` line each.
    fn to_text(self) -> String {
        let mut out = String::from(
            "# pricewatch: what the store held at its last flush, checked at start-up\n",
        );
        out.push_str(&format!("generation {}\n", self.generation));
        for (name, n) in COUNTED.iter().zip(self.trees) {
            out.push_str(&format!("{name} {n}\n"));
        }
        out
    }

    fn from_text(text: &str) -> Option<Counts> {
        let mut counts = Counts::default();
        let mut seen = 0;
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let (name, value) = line.split_once(' ')?;
            let value: u64 = value.trim().parse().ok()?;
            if name == "generation" {
                counts.generation = value;
            } else {
                let i = COUNTED.iter().position(|c| *c == name)?;
                counts.trees[i] = value;
            }
            seen += 1;
        }
        (seen == 1 + COUNTED.len()).then_some(counts)
    }
}

/// The changes one transaction makes to the counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Delta(pub(super) [i64; 5]);

impl Delta {
    pub(super) const REFERENCES: usize = 0;
    pub(super) const WATCHES: usize = 1;
    pub(super) const PRODUCTS: usize = 2;
    pub(super) const OUTBOX: usize = 3;
    pub(super) const DEAD_LETTERS: usize = 4;

    pub(super) fn one(tree: usize, by: i64) -> Delta {
        let mut delta = Delta::default();
        delta.add(tree, by);
        delta
    }

    pub(super) fn add(&mut self, tree: usize, by: i64) {
        self.0[tree] += by;
    }
}

type TxTree = sled::transaction::TransactionalTree;
type TxResult<T> = sled::transaction::ConflictableTransactionResult<T, StoreError>;

/// Applies `delta` to the counts inside the caller's transaction over `meta`; nothing is
/// written (and the generation stays) when it changes nothing.
pub(super) fn count(meta: &TxTree, delta: Delta) -> TxResult<()> {
    if delta == Delta::default() {
        return Ok(());
    }
    let mut counts = match meta.get(COUNTS_KEY)? {
        Some(bytes) => Counts::decode(&bytes).unwrap_or_default(),
        None => Counts::default(),
    };
    counts.generation += 1;
    for (n, d) in counts.trees.iter_mut().zip(delta.0) {
        *n = n.saturating_add_signed(d);
    }
    meta.insert(COUNTS_KEY, counts.encode())?;
    Ok(())
}

/// The counts recorded in `meta`, outside a transaction.
pub(super) fn recorded(meta: &sled::Tree) -> Result<Recorded, StoreError> {
    Ok(match meta.get(COUNTS_KEY).map_err(io)? {
        None => Recorded::None,
        Some(bytes) => match Counts::decode(&bytes) {
            Some(c) => Recorded::Counts(c),
            None => Recorded::Unreadable,
        },
    })
}

/// Makes the counts in `meta` what the store was found to hold, when they differ: a store
/// written by a build that did not count gets its first counts, and one that holds more
/// than it recorded (a retry's write that raced a removal) is counted again. Runs only once
/// the store passed [`compare`], so it never hides a loss.
pub(super) fn reconcile(meta: &sled::Tree, found: [u64; 5]) -> Result<(), StoreError> {
    let generation = match recorded(meta)? {
        Recorded::Counts(c) if c.trees == found => return Ok(()),
        Recorded::Counts(c) => c.generation + 1,
        Recorded::None | Recorded::Unreadable => 1,
    };
    let counts = Counts {
        generation,
        trees: found,
    };
    meta.insert(COUNTS_KEY, counts.encode()).map_err(io)?;
    Ok(())
}

/// What the `meta` tree says the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A new store, or one written by a build that did not count.
    None,
    Counts(Counts),
    Unreadable,
}

/// What the checkpoint file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    Missing,
    Counts(Counts),
    Unreadable,
}

/// One tree holding fewer records than were recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub tree: &'static str,
    pub recorded: u64,
    pub found: u64,
}

/// Why a store is taken for damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// Fewer records than the store or its checkpoint recorded.
    Missing(Vec<Missing>),
    /// The store went back to an earlier state than the checkpoint made durable, with the
    /// same number of records (changes are lost, not records).
    RolledBack { recorded: u64, found: u64 },
    /// The store's own counts or the checkpoint cannot be read.
    UnreadableCounts(&'static str),
    /// sled could not read the store.
    Unreadable(String),
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::Missing(missing) => {
                let parts: Vec<String> = missing
                    .iter()
                    .map(|m| format!("{}: {} recorded, {} found", m.tree, m.recorded, m.found))
                    .collect();
                write!(f, "{}", parts.join("; "))
            }
            Damage::RolledBack { recorded, found } => write!(
                f,
                "the store went back to an earlier state: change {recorded} was made durable, \
                 the data stops at change {found}"
            ),
            Damage::UnreadableCounts(what) => write!(f, "{what} cannot be read"),
            Damage::Unreadable(why) => write!(f, "the store cannot be read: {why}"),
        }
    }
}

/// The rule: the data must hold at least what the store recorded, and at least what the
/// checkpoint says was durable when the store is not past it.
///
/// A checkpoint is written after the flush that made its counts durable, so the store on
/// disk is never behind it unless it lost something; it may be ahead (a crash before the
/// next checkpoint), and then its counts are not compared with the checkpoint's (watches
/// removed since are not missing).
pub fn compare(found: &[u64; 5], recorded: Recorded, checkpoint: Checkpoint) -> Option<Damage> {
    let missing = |against: &Counts| -> Vec<Missing> {
        SHOWN
            .iter()
            .zip(against.trees.iter().zip(found))
            .filter(|(_, (want, got))| got < want)
            .map(|(tree, (want, got))| Missing {
                tree,
                recorded: *want,
                found: *got,
            })
            .collect()
    };
    let own = match recorded {
        Recorded::Unreadable => return Some(Damage::UnreadableCounts("the store's own counts")),
        Recorded::None => None,
        Recorded::Counts(c) => Some(c),
    };
    let durable = match checkpoint {
        Checkpoint::Unreadable => {
            return Some(Damage::UnreadableCounts(
                "the checkpoint file (pricewatch.state)",
            ))
        }
        Checkpoint::Missing => None,
        Checkpoint::Counts(c) => Some(c),
    };
    let generation = own.map_or(0, |c| c.generation);
    if let Some(durable) = durable {
        if generation <= durable.generation {
            let lost = missing(&durable);
            if !lost.is_empty() {
                return Some(Damage::Missing(lost));
            }
            if generation < durable.generation {
                return Some(Damage::RolledBack {
                    recorded: durable.generation,
                    found: generation,
                });
            }
        }
    }
    match own.map(|c| missing(&c)) {
        Some(lost) if !lost.is_empty() => Some(Damage::Missing(lost)),
        _ => None,
    }
}

/// What [`inspect`] found.
#[derive(Debug)]
pub struct Inspection {
    /// Records per counted tree, in the order of [`Counts::trees`].
    pub found: [u64; 5],
    pub recorded: Recorded,
    pub damage: Option<Damage>,
    /// The checked copy, when the caller asked to keep it (see [`Keep`]).
    pub scratch: Option<Scratch>,
}

/// Whether [`inspect`] keeps the checked copy for the caller to read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Scratch,
    Nothing,
}

/// A copy of a data directory, beside it or in the temporary directory, removed on drop.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Why a data directory could not be inspected (not damage: the directory is busy, or the
/// copy could not be made).
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("it is locked by another process (is another pricewatch running on it?)")]
    Locked,
    #[error("cannot read it")]
    Read(#[source] std::io::Error),
    #[error("cannot copy it to {0} to check it")]
    Copy(PathBuf, #[source] std::io::Error),
}

/// How long [`inspect`] waits for a lock another store is releasing (as `open` does).
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Checks the data directory at `path` without writing to it: sled's lock taken, the
/// directory copied aside, the copy opened and counted, and the counts compared with what
/// the store and its checkpoint recorded. A directory without a `db` file holds no store
/// yet (only a checkpoint saying it held nothing may sit beside it).
pub fn inspect(path: &Path, keep: Keep) -> Result<Inspection, InspectError> {
    let checkpoint = read_checkpoint(path);
    let db_file = path.join("db");
    if !db_file.exists() {
        return Ok(Inspection {
            found: [0; 5],
            recorded: Recorded::None,
            damage: compare(&[0; 5], Recorded::None, checkpoint),
            scratch: None,
        });
    }
    let lock = lock(&db_file)?;
    let scratch = copy_aside(path)?;
    drop(lock);
    let opened = std::panic::catch_unwind(|| count_store(scratch.path()));
    let inspection = match opened {
        Ok(Ok((found, recorded))) => Inspection {
            found,
            recorded,
            damage: compare(&found, recorded, checkpoint),
            scratch: None,
        },
        Ok(Err(e)) => Inspection {
            found: [0; 5],
            recorded: Recorded::None,
            damage: Some(Damage::Unreadable(crate::error::Chain(&e).to_string())),
            scratch: None,
        },
        Err(_) => Inspection {
            found: [0; 5],
            recorded: Recorded::None,
            damage: Some(Damage::Unreadable("sled stopped on it (a panic)".into())),
            scratch: None,
        },
    };
    Ok(Inspection {
        scratch: (keep == Keep::Scratch).then_some(scratch),
        ..inspection
    })
}

/// sled's own lock on `db`, held while the directory is copied so that the copy is not
/// taken while a daemon writes.
fn lock(db_file: &Path) -> Result<std::fs::File, InspectError> {
    let file = std::fs::File::open(db_file).map_err(InspectError::Read)?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(file),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                if Instant::now() >= deadline {
                    return Err(InspectError::Locked);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(InspectError::Read(e.into())),
        }
    }
}

fn copy_aside(path: &Path) -> Result<Scratch, InspectError> {
    // Stores opened side by side in one process (tests, a restart) each get their own.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!(".pricewatch-check-{}-{n}-{nanos}", std::process::id());
    // Beside the data directory first: the same file system, which has room for the data
    // already (a private /tmp under systemd is often a small tmpfs); the temporary
    // directory when the parent cannot be written.
    let beside = path
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(|parent| parent.join(&name)));
    let mut first_error = None;
    for place in beside.into_iter().chain([std::env::temp_dir().join(&name)]) {
        let scratch = Scratch { path: place };
        match copy_dir(path, scratch.path()) {
            Ok(()) => return Ok(scratch),
            Err(e) => {
                first_error.get_or_insert((scratch.path.clone(), e));
            }
        }
    }
    let (place, e) = first_error.unwrap_or_else(|| {
        (
            std::env::temp_dir(),
            std::io::Error::other("no place to copy to"),
        )
    });
    Err(InspectError::Copy(place, e))
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(CHECKPOINT_FILE) {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_dir(&entry.path(), &to.join(&name))?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), to.join(&name))?;
        }
    }
    Ok(())
}

/// sled's page cache while the copy is counted. Counting reads each page once, so a cache
/// saves nothing; sled's default (1 GiB) keeps the pages read, and the daemon's peak memory
/// grew with the store: 1.3 GB at a million watches (BENCHMARKS.md, "A million watches").
const COUNT_CACHE: u64 = 8 << 20;

/// How the copy is opened to be counted.
fn scratch_config(path: &Path) -> sled::Config {
    sled::Config::new().path(path).cache_capacity(COUNT_CACHE)
}

/// Opens the copy with sled and counts it.
fn count_store(path: &Path) -> Result<([u64; 5], Recorded), StoreError> {
    let db = scratch_config(path).open().map_err(io)?;
    let names = db.tree_names();
    let mut found = [0; 5];
    let count_named = |name: &str| -> Result<u64, StoreError> {
        // Opening a tree that is not there would create it; an absent one holds nothing.
        if names.iter().any(|n| n.as_ref() == name.as_bytes()) {
            count_tree(&db.open_tree(name).map_err(io)?)
        } else {
            Ok(0)
        }
    };
    for (slot, name) in found.iter_mut().zip(COUNTED) {
        *slot = count_named(name)?;
    }
    // The outbox's waiting part (`due`) is queued messages too.
    found[Delta::OUTBOX] += count_named(OUTBOX_WAITING)?;
    let recorded = if names.iter().any(|n| n.as_ref() == b"meta") {
        recorded(&db.open_tree("meta").map_err(io)?)?
    } else {
        Recorded::None
    };
    Ok((found, recorded))
}

/// Records in `tree`; sled's own `len` counts an unreadable entry as one.
pub(super) fn count_tree(tree: &sled::Tree) -> Result<u64, StoreError> {
    let mut n = 0;
    for key in tree.iter().keys() {
        key.map_err(io)?;
        n += 1;
    }
    Ok(n)
}

fn read_checkpoint(dir: &Path) -> Checkpoint {
    match std::fs::read_to_string(dir.join(CHECKPOINT_FILE)) {
        Ok(text) => Counts::from_text(&text).map_or(Checkpoint::Unreadable, Checkpoint::Counts),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Checkpoint::Missing,
        Err(_) => Checkpoint::Unreadable,
    }
}

/// Writes the checkpoint into `dir`: a temporary file synced, then renamed over the old
/// one, so the file is always a whole one.
pub(super) fn write_checkpoint(dir: &Path, counts: Counts) -> std::io::Result<()> {
    write_whole(dir, CHECKPOINT_FILE, &counts.to_text())
}

/// Writes `text` as `dir/name`: a temporary file synced, then renamed over the old one,
/// the directory synced, so the file is always a whole one and the rename durable.
fn write_whole(dir: &Path, name: &str, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let temp = dir.join(format!("{name}.tmp"));
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// The store's counts for the writer thread: read before a flush, written as the
/// checkpoint after it succeeded.
pub(super) fn durable_counts(meta: &sled::Tree) -> Option<Counts> {
    match recorded(meta) {
        Ok(Recorded::Counts(c)) => Some(c),
        _ => None,
    }
}

/// One file of the data directory as the clean-close marker describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileMark {
    /// Relative to the data directory, `/`-separated.
    name: String,
    len: u64,
    modified_ns: i128,
    inode: u64,
}

/// Every file sled keeps in `dir` (the checkpoint and the marker left out), sorted by name.
fn file_marks(dir: &Path) -> std::io::Result<Vec<FileMark>> {
    use std::os::unix::fs::MetadataExt;
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<FileMark>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if prefix.is_empty() && name.starts_with(CHECKPOINT_FILE) {
                continue;
            }
            let meta = entry.metadata()?;
            let relative = format!("{prefix}{name}");
            if meta.is_dir() {
                walk(&entry.path(), &format!("{relative}/"), out)?;
            } else {
                out.push(FileMark {
                    name: relative,
                    len: meta.len(),
                    modified_ns: i128::from(meta.mtime()) * 1_000_000_000
                        + i128::from(meta.mtime_nsec()),
                    inode: meta.ino(),
                });
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out)?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn closed_text(counts: Counts, files: &[FileMark]) -> String {
    let mut out = String::from(
        "# pricewatch: the store closed cleanly with these counts and files; removed when it opens\n",
    );
    out.push_str(&counts.to_text());
    for f in files {
        // The name last: it is the only part that may hold a space.
        out.push_str(&format!(
            "file {} {} {} {}\n",
            f.len, f.modified_ns, f.inode, f.name
        ));
    }
    out
}

fn closed_from_text(text: &str) -> Option<(Counts, Vec<FileMark>)> {
    let mut counts = String::new();
    let mut files = Vec::new();
    for line in text.lines() {
        match line.strip_prefix("file ") {
            Some(rest) => {
                let mut parts = rest.splitn(4, ' ');
                files.push(FileMark {
                    len: parts.next()?.parse().ok()?,
                    modified_ns: parts.next()?.parse().ok()?,
                    inode: parts.next()?.parse().ok()?,
                    name: parts.next()?.to_owned(),
                });
            }
            None => {
                counts.push_str(line);
                counts.push('\n');
            }
        }
    }
    Some((Counts::from_text(&counts)?, files))
}

/// Leaves the clean-close marker in `dir`: `counts` are what the store held when it closed.
/// Call it only once sled has let go of the files (its lock is free), or the marker would
/// describe files still being written.
pub(super) fn mark_closed(dir: &Path, counts: Counts) -> std::io::Result<()> {
    // Read once: sled has let go of the files, and nothing else writes them.
    let files = file_marks(dir)?;
    // A file's modification time moves in the kernel's coarse ticks (milliseconds), so a
    // write in the same tick as the last one described would leave it unchanged. The
    // marker is trusted only for files older than itself (`closed`): written a tick after
    // the newest file, it is.
    let newest = files.iter().map(|f| f.modified_ns).max().unwrap_or(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    let wait = (newest + MTIME_TICK_NS - now).clamp(0, MTIME_TICK_NS);
    std::thread::sleep(Duration::from_nanos(wait as u64));
    write_whole(dir, CLOSED_FILE, &closed_text(counts, &files))
}

/// More than the coarsest clock tick a file system stamps modification times with (10 ms at
/// a kernel's `HZ=100`).
const MTIME_TICK_NS: i128 = 20_000_000;

/// Waits (as [`inspect`] does) until sled has let go of `dir`, then leaves the marker.
pub(super) fn mark_closed_once_released(dir: &Path, counts: Counts) -> Result<(), String> {
    let db_file = dir.join("db");
    let lock = lock(&db_file).map_err(|e| e.to_string())?;
    let marked = mark_closed(dir, counts).map_err(|e| e.to_string());
    drop(lock);
    marked
}

/// What the clean-close marker in a data directory says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Closed {
    /// None there.
    Absent,
    /// It describes every file as it is now, each older than the marker itself, and agrees
    /// with the checkpoint: the store closed with these counts and nothing changed since.
    Valid(Counts),
    /// Unreadable, or something changed since it was written.
    Stale,
}

/// Reads the clean-close marker of `dir` without changing anything.
pub(super) fn closed(dir: &Path) -> Closed {
    use std::os::unix::fs::MetadataExt;
    let marker = dir.join(CLOSED_FILE);
    let written = match std::fs::metadata(&marker) {
        Ok(meta) => i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Closed::Absent,
        Err(_) => return Closed::Stale,
    };
    let valid = std::fs::read_to_string(&marker)
        .ok()
        .and_then(|text| closed_from_text(&text))
        .filter(|(counts, files)| {
            read_checkpoint(dir) == Checkpoint::Counts(*counts)
                && files.iter().all(|f| f.modified_ns < written)
                && file_marks(dir).is_ok_and(|now| now == *files)
        });
    valid.map_or(Closed::Stale, |(counts, _)| Closed::Valid(counts))
}

/// Removes the marker, durably: called before sled opens the files, which makes it stale.
pub(super) fn remove_closed(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(CLOSED_FILE)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(()) => std::fs::File::open(dir)?.sync_all(),
    }
}

/// The rule after a clean close: the counts the opened store recorded against the ones it
/// closed with, as [`compare`] judges a count of the copy against the checkpoint.
pub fn compare_closed(closed: Counts, recorded: Recorded) -> Option<Damage> {
    let found = match recorded {
        Recorded::Counts(c) => c,
        Recorded::None => Counts::default(),
        Recorded::Unreadable => return Some(Damage::UnreadableCounts("the store's own counts")),
    };
    compare(
        &found.trees,
        Recorded::Counts(found),
        Checkpoint::Counts(closed),
    )
}

/// The error `open` returns for a damaged store.
pub(super) fn damaged(path: &Path, damage: Damage) -> StoreError {
    StoreError::Damaged {
        path: path.to_owned(),
        damage,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{added, config, key, message, new_watch, point, reference};
    use super::super::{SledStore, SledStoreConfig};
    use super::*;
    use crate::domain::CheckRecord;
    use crate::store::Store;

    /// The counts the store recorded are what its trees hold.
    fn assert_counted(store: &SledStore) -> Counts {
        let trees = [
            &store.references,
            &store.watches,
            &store.products,
            &store.outbox,
            &store.dead_letters,
        ];
        let mut found = trees.map(|t| count_tree(t).unwrap());
        found[Delta::OUTBOX] += count_tree(&store.outbox_waiting).unwrap();
        let Recorded::Counts(recorded) = recorded(&store.meta).unwrap() else {
            panic!("no counts recorded")
        };
        assert_eq!(recorded.trees, found);
        recorded
    }

    #[test]
    fn the_copy_is_counted_with_a_small_page_cache() {
        // sled's default is 1 GiB, which the count fills with every page of a large store.
        assert!(scratch_config(Path::new("x")).cache_capacity <= 32 << 20);
    }

    #[tokio::test]
    async fn stats_are_the_recorded_counts_not_a_walk_of_the_trees() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&config(dir.path())).unwrap();
        store
            .upsert_reference(&reference("a", "https://smba.trafficmanager.net/"))
            .await
            .unwrap();
        // Written behind the counts' back: a walk of the tree would find it.
        store.references.insert(b"stray", b"{}".to_vec()).unwrap();
        assert_eq!(store.stats().await.unwrap().references, 1);
    }

    #[tokio::test]
    async fn every_write_keeps_the_counts_equal_to_what_the_trees_hold() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&config(dir.path())).unwrap();
        assert_eq!(assert_counted(&store).trees, [0; 5]);
        for conv in ["a", "b", "a"] {
            store
                .upsert_reference(&reference(conv, "http://x/"))
                .await
                .unwrap();
        }
        let conv = key("a");
        let mut watches = Vec::new();
        for url in ["https://s.example/1", "https://s.example/2"] {
            watches.push(added(
                store.add_watch(new_watch(&conv, url), 10).await.unwrap(),
            ));
        }
        added(
            store
                .add_watch(new_watch(&key("b"), "https://s.example/1"), 10)
                .await
                .unwrap(),
        );
        assert_eq!(assert_counted(&store).trees, [2, 3, 2, 0, 0]);
        store.remove_watches(&conv, &[watches[1].id]).await.unwrap();
        assert_eq!(assert_counted(&store).trees, [2, 2, 1, 0, 0]);

        let queued = store
            .queue_messages(
                vec![
                    message("m1", &conv, None),
                    message("m2", &conv, None),
                    message("m1", &conv, None),
                ],
                5,
            )
            .await
            .unwrap();
        let check = CheckRecord {
            product: store.product(&watches[0].url).await.unwrap().unwrap(),
            change: Some(point(10, 3)),
            watches: vec![watches[0].clone()],
            messages: vec![message("m3", &conv, Some(watches[0].id))],
            now_ms: 10,
        };
        store.record_check(check).await.unwrap();
        assert_eq!(assert_counted(&store).trees, [2, 2, 1, 3, 0]);
        store.remove_delivered(vec![queued[0].id]).await.unwrap();
        store
            .move_to_dead_letters(queued[1].id, "gone".into(), 20)
            .await
            .unwrap();
        assert_eq!(assert_counted(&store).trees, [2, 2, 1, 1, 1]);
        store.requeue_dead_letter(queued[1].id, 30).await.unwrap();
        assert_eq!(assert_counted(&store).trees, [2, 2, 1, 2, 0]);

        let target_dir = tempfile::tempdir().unwrap();
        let target = SledStore::open(&config(target_dir.path())).unwrap();
        target
            .restore_snapshot(store.snapshot().await.unwrap())
            .await
            .unwrap();
        assert_eq!(assert_counted(&target).trees, [2, 2, 1, 2, 0]);

        // Closing writes the checkpoint at the counts the store ends with.
        let last = assert_counted(&store);
        drop(store);
        let text = std::fs::read_to_string(dir.path().join("data").join(CHECKPOINT_FILE));
        assert_eq!(Counts::from_text(&text.unwrap()), Some(last));
        assert_eq!(SledStore::verify(&dir.path().join("data")).unwrap(), last);
    }

    #[tokio::test]
    async fn a_store_behind_its_checkpoint_is_refused_without_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let (data, counts) = closed_with_a_watch(dir.path()).await;
        // As if the log had lost the last five changes.
        let ahead = Counts {
            generation: counts.generation + 5,
            ..counts
        };
        write_checkpoint(&data, ahead).unwrap();
        let db = std::fs::read(data.join("db")).unwrap();
        let err = SledStore::open(&config(dir.path())).unwrap_err();
        assert_rolled_back(&err);
        assert_eq!(std::fs::read(data.join("db")).unwrap(), db);
    }

    #[tokio::test]
    async fn a_store_from_before_counting_is_counted_and_checkpointed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = SledStore::open(&config(dir.path())).unwrap();
        added(
            store
                .add_watch(new_watch(&key("a"), "https://s.example/1"), 10)
                .await
                .unwrap(),
        );
        drop(store);
        {
            let db = sled::open(&data).unwrap();
            db.open_tree("meta").unwrap().remove(COUNTS_KEY).unwrap();
            db.flush().unwrap();
        }
        std::fs::remove_file(data.join(CHECKPOINT_FILE)).unwrap();
        let store = SledStore::open(&config(dir.path())).unwrap();
        assert_eq!(assert_counted(&store).trees, [0, 1, 1, 0, 0]);
        assert!(data.join(CHECKPOINT_FILE).exists());
    }

    fn assert_rolled_back(err: &StoreError) {
        assert!(
            matches!(
                err,
                StoreError::Damaged {
                    damage: Damage::RolledBack { .. },
                    ..
                }
            ),
            "{err:?}"
        );
    }

    /// A store with one watch, closed cleanly; the data directory.
    async fn closed_with_a_watch(dir: &Path) -> (PathBuf, Counts) {
        let store = SledStore::open(&config(dir)).unwrap();
        added(
            store
                .add_watch(new_watch(&key("a"), "https://s.example/1"), 10)
                .await
                .unwrap(),
        );
        let counts = assert_counted(&store);
        drop(store);
        (dir.join("data"), counts)
    }

    #[tokio::test]
    async fn a_clean_close_lets_the_next_open_skip_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (data, counts) = closed_with_a_watch(dir.path()).await;
        let text = std::fs::read_to_string(data.join(CLOSED_FILE)).unwrap();
        let (closed, files) = closed_from_text(&text).unwrap();
        assert_eq!(closed, counts);
        assert!(files.iter().any(|f| f.name == "db"), "{files:?}");

        let store = SledStore::open(&config(dir.path())).unwrap();
        assert_eq!(store.start_check(), super::super::StartCheck::ClosedCleanly);
        // Gone while the store is open: a crash from here on leaves no marker.
        assert!(!data.join(CLOSED_FILE).exists());
        assert_eq!(store.stats().await.unwrap().watches, 1);
        drop(store);
        assert!(data.join(CLOSED_FILE).exists());
    }

    #[tokio::test]
    async fn a_store_opened_and_not_closed_is_checked_on_a_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (data, _) = closed_with_a_watch(dir.path()).await;
        let store = SledStore::open(&config(dir.path())).unwrap();
        // As a crash would leave it: the files of a store that was open, no marker.
        let copy = dir.path().join("crashed");
        copy_dir(&data, &copy).unwrap();
        drop(store);
        let crashed = SledStore::open(&SledStoreConfig {
            path: copy.clone(),
            ..config(dir.path())
        })
        .unwrap();
        assert_eq!(crashed.start_check(), super::super::StartCheck::CopyCounted);
    }

    #[tokio::test]
    async fn a_file_changed_after_a_clean_close_is_checked_on_a_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (data, _) = closed_with_a_watch(dir.path()).await;
        let db = std::fs::File::options()
            .write(true)
            .open(data.join("db"))
            .unwrap();
        db.set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1))
            .unwrap();
        drop(db);
        let store = SledStore::open(&config(dir.path())).unwrap();
        assert_eq!(store.start_check(), super::super::StartCheck::CopyCounted);
        assert!(!data.join(CLOSED_FILE).exists());
    }

    #[tokio::test]
    async fn the_full_check_can_be_asked_for_at_every_start() {
        let dir = tempfile::tempdir().unwrap();
        let (data, _) = closed_with_a_watch(dir.path()).await;
        let store = SledStore::open(&SledStoreConfig {
            full_check_at_start: true,
            ..config(dir.path())
        })
        .unwrap();
        assert_eq!(store.start_check(), super::super::StartCheck::CopyCounted);
        assert!(!data.join(CLOSED_FILE).exists());
    }

    #[tokio::test]
    async fn a_store_behind_what_it_closed_with_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (data, counts) = closed_with_a_watch(dir.path()).await;
        // The files unchanged, but five more changes said to be durable at close: what a
        // log that lost its tail at rest would look like.
        let ahead = Counts {
            generation: counts.generation + 5,
            ..counts
        };
        let (_, files) =
            closed_from_text(&std::fs::read_to_string(data.join(CLOSED_FILE)).unwrap()).unwrap();
        std::fs::write(data.join(CLOSED_FILE), closed_text(ahead, &files)).unwrap();
        write_checkpoint(&data, ahead).unwrap();
        let err = SledStore::open(&config(dir.path())).unwrap_err();
        assert_rolled_back(&err);
    }

    #[tokio::test]
    async fn a_store_a_check_found_damaged_is_checked_again_whatever_its_marker() {
        let dir = tempfile::tempdir().unwrap();
        let (data, _) = closed_with_a_watch(dir.path()).await;
        // Damage at rest that leaves the file's size, time and inode as they were: the
        // marker cannot see it.
        let db = data.join("db");
        let before = std::fs::metadata(&db).unwrap();
        std::fs::write(&db, vec![0u8; before.len() as usize]).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&db)
            .unwrap()
            .set_modified(before.modified().unwrap())
            .unwrap();
        assert!(matches!(closed(&data), Closed::Valid(_)));
        // `verify` finds it: from then on no start may skip the copy check.
        assert!(SledStore::verify(&data).is_err());
        assert_eq!(closed(&data), Closed::Absent);
        let zeroed = std::fs::read(&db).unwrap();
        assert!(SledStore::open(&config(dir.path())).is_err());
        assert_eq!(
            std::fs::read(&db).unwrap(),
            zeroed,
            "sled opened the real files"
        );
    }

    #[test]
    fn the_marker_text_reads_back_with_any_file_name() {
        let files = vec![
            FileMark {
                name: "blobs/a name with spaces".into(),
                len: 7,
                modified_ns: -3,
                inode: 42,
            },
            FileMark {
                name: "db".into(),
                len: 1 << 40,
                modified_ns: 1_700_000_000_123_456_789,
                inode: 1,
            },
        ];
        let c = counts(9, [1, 2, 3, 4, 5]);
        assert_eq!(closed_from_text(&closed_text(c, &files)), Some((c, files)));
        assert_eq!(closed_from_text("file 1 2 3\n"), None);
    }

    #[test]
    fn compare_closed_is_the_checkpoint_rule() {
        let closed = counts(7, [1, 1, 1, 0, 0]);
        assert_eq!(compare_closed(closed, Recorded::Counts(closed)), None);
        assert!(matches!(
            compare_closed(closed, Recorded::Counts(counts(6, [1, 1, 1, 0, 0]))),
            Some(Damage::RolledBack {
                recorded: 7,
                found: 6
            })
        ));
        assert!(matches!(
            compare_closed(closed, Recorded::None),
            Some(Damage::Missing(_))
        ));
        assert!(matches!(
            compare_closed(closed, Recorded::Unreadable),
            Some(Damage::UnreadableCounts(_))
        ));
    }

    fn counts(generation: u64, trees: [u64; 5]) -> Counts {
        Counts { generation, trees }
    }

    #[test]
    fn counts_and_the_checkpoint_text_read_back() {
        let c = counts(7, [3, 20, 12, 4, 1]);
        assert_eq!(Counts::decode(&c.encode()), Some(c));
        assert_eq!(Counts::decode(&[1, 2, 3]), None);
        assert_eq!(Counts::from_text(&c.to_text()), Some(c));
        assert_eq!(Counts::from_text("generation 1\nwatches x\n"), None);
        assert_eq!(
            Counts::from_text("generation 1\n"),
            None,
            "all lines needed"
        );
    }

    #[test]
    fn a_new_store_and_a_store_from_before_counting_pass() {
        assert_eq!(compare(&[0; 5], Recorded::None, Checkpoint::Missing), None);
        assert_eq!(
            compare(&[3, 20, 12, 0, 0], Recorded::None, Checkpoint::Missing),
            None
        );
    }

    #[test]
    fn fewer_records_than_the_store_recorded_is_damage() {
        let own = Recorded::Counts(counts(9, [3, 20, 12, 0, 0]));
        assert_eq!(compare(&[3, 20, 12, 0, 0], own, Checkpoint::Missing), None);
        assert_eq!(
            compare(&[3, 1, 12, 0, 0], own, Checkpoint::Missing),
            Some(Damage::Missing(vec![Missing {
                tree: "watches",
                recorded: 20,
                found: 1
            }]))
        );
        // More than recorded loses nothing (a write that raced a removal).
        assert_eq!(compare(&[3, 21, 12, 0, 0], own, Checkpoint::Missing), None);
    }

    #[test]
    fn a_store_behind_its_checkpoint_is_damage_even_when_its_own_counts_agree() {
        let durable = Checkpoint::Counts(counts(40, [3, 20, 12, 0, 0]));
        // A log rolled back to generation 2, one watch: its own counts say one watch.
        let rolled = Recorded::Counts(counts(2, [1, 1, 1, 0, 0]));
        let damage = compare(&[1, 1, 1, 0, 0], rolled, durable).unwrap();
        assert_eq!(
            damage.to_string(),
            "conversations: 3 recorded, 1 found; watches: 20 recorded, 1 found; \
             products: 12 recorded, 1 found"
        );
        // A store emptied (zeroed) has no counts at all.
        assert!(matches!(
            compare(&[0; 5], Recorded::None, durable),
            Some(Damage::Missing(m)) if m.len() == 3
        ));
        // Behind, with the same sizes: changes are lost all the same.
        assert_eq!(
            compare(
                &[3, 20, 12, 0, 0],
                Recorded::Counts(counts(39, [3, 20, 12, 0, 0])),
                durable
            ),
            Some(Damage::RolledBack {
                recorded: 40,
                found: 39
            })
        );
    }

    #[test]
    fn a_store_ahead_of_its_checkpoint_is_not_damage_even_with_fewer_records() {
        // Watches removed and flushed, then a crash before the checkpoint was written.
        let durable = Checkpoint::Counts(counts(40, [3, 20, 12, 0, 0]));
        let own = Recorded::Counts(counts(41, [3, 15, 9, 0, 0]));
        assert_eq!(compare(&[3, 15, 9, 0, 0], own, durable), None);
        assert_eq!(
            compare(
                &[3, 20, 12, 0, 0],
                Recorded::Counts(counts(40, [3, 20, 12, 0, 0])),
                durable
            ),
            None
        );
    }

    #[test]
    fn unreadable_counts_are_damage() {
        assert_eq!(
            compare(&[0; 5], Recorded::Unreadable, Checkpoint::Missing),
            Some(Damage::UnreadableCounts("the store's own counts"))
        );
        assert!(compare(&[0; 5], Recorded::None, Checkpoint::Unreadable).is_some());
    }
}
