//! The inode table: inode numbers, names, the key each stands for, and what we last
//! learned about it from S3 (or from our own writes). Numbers are never reused during
//! a mount, so they stay stable for its life.
//!
//! The table forgets: the kernel counts the entries we hand it (`remember`) and tells
//! us when it drops them (`forget`); an inode nobody references any more, with nothing
//! of ours pending on it, leaves the table. Children are indexed by parent (an ordered
//! map), so a directory's names are found without scanning the whole table.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::ActiveWrite;
use super::metadata::PosixMetadata;

pub(crate) const ROOT_INO: u64 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Directory,
    Symlink,
}

pub(crate) struct Inode {
    pub(crate) parent: u64,
    pub(crate) name: String,
    /// Path below the mount prefix, `/`-separated, no trailing slash; "" for the root.
    pub(crate) path: String,
    pub(crate) kind: Kind,
    pub(crate) size: u64,
    pub(crate) metadata: PosixMetadata,
    /// What the object carries that is not ours (other tools' metadata, its
    /// Content-Type), kept on every copy; None when nothing or not known.
    pub(crate) foreign: Option<std::sync::Arc<crate::s3::ObjectHeaders>>,
    pub(crate) last_modified: SystemTime,
    /// Whether `metadata` came from a HEAD (or our own write), not just a listing.
    pub(crate) metadata_loaded: bool,
    pub(crate) valid_until: Instant,
    /// For directories: until when the children in the table are the complete listing.
    pub(crate) listing_valid_until: Option<Instant>,
    /// The upload of this file while it is open for writing.
    pub(crate) active_write: Option<Arc<ActiveWrite>>,
    /// Attribute changes on a finished object not yet sent to S3 (folded into a rename).
    pub(crate) pending_metadata_since: Option<Instant>,
    /// Entries the kernel holds for this inode (lookups it was answered, minus forgets).
    pub(crate) lookups: u64,
    /// Its name is gone (unlinked, or replaced by a rename) while something still uses
    /// the inode: `stat` of an open descriptor shows nlink 0.
    pub(crate) unlinked: bool,
    /// When this mount last changed what S3 holds for it (the table's generation
    /// then): a listing taken before that must not undo it ([`InodeTable::touch`]).
    pub(crate) changed: u64,
    /// The kernel was asked to drop its entry for this name ([`InodeTable::idle_entries`]).
    pub(crate) let_go: bool,
}

impl Inode {
    /// A name nothing is known about yet but its kind: no metadata, fresh until
    /// `valid_until`.
    pub(crate) fn new(
        parent: u64,
        name: &str,
        path: &str,
        kind: Kind,
        valid_until: Instant,
    ) -> Self {
        Self {
            parent,
            name: name.to_owned(),
            path: path.to_owned(),
            kind,
            size: 0,
            metadata: PosixMetadata::default(),
            foreign: None,
            last_modified: std::time::SystemTime::now(),
            metadata_loaded: false,
            valid_until,
            listing_valid_until: None,
            lookups: 0,
            active_write: None,
            pending_metadata_since: None,
            unlinked: false,
            changed: 0,
            let_go: false,
        }
    }

    pub(crate) fn is_fresh(&self, now: Instant) -> bool {
        self.valid_until > now
    }

    pub(crate) fn is_being_written(&self) -> bool {
        self.active_write.is_some()
    }

    /// Ours and maybe not in S3 yet: a file being written, or a held change (for a new
    /// directory, its marker).
    pub(crate) fn exists_only_locally(&self) -> bool {
        self.is_being_written() || self.pending_metadata_since.is_some()
    }
}

pub(crate) struct InodeTable {
    inodes: HashMap<u64, Inode>,
    children: BTreeMap<(u64, String), u64>,
    /// Names S3 said do not exist, until when that answer stands (negative lookups:
    /// rsync and cp stat a destination several times before creating it).
    absent: HashMap<(u64, String), Instant>,
    next_ino: u64,
    /// Inodes that may hold a change (`pending_metadata_since`): what the flusher looks
    /// at, so it never walks the whole table. An entry whose change has gone is dropped
    /// when the flusher next sees it ([`InodeTable::held`]).
    held: BTreeSet<u64>,
    /// Inodes the kernel may never have been given (made by a listing or a lookup), in
    /// the order they were made: what the sweep of unreferenced names looks at, oldest
    /// first, instead of the whole table.
    unreferenced: VecDeque<u64>,
    /// Inodes the kernel was handed, in about the order it was: what the sweep asks the
    /// kernel to let go of once idle ([`Self::idle_entries`]), so the table holds the
    /// names in use, not every name a backup ever wrote.
    given: VecDeque<u64>,
    /// Counts this mount's own changes to what S3 holds (see [`Inode::changed`]).
    generation: u64,
}

/// Past this many remembered misses, expired ones are dropped on the next insert.
const ABSENT_PRUNE_AT: usize = 4096;

impl InodeTable {
    pub(crate) fn new(root: Inode) -> Self {
        let mut inodes = HashMap::new();
        inodes.insert(ROOT_INO, root);
        Self {
            inodes,
            children: BTreeMap::new(),
            absent: HashMap::new(),
            next_ino: ROOT_INO + 1,
            held: BTreeSet::new(),
            unreferenced: VecDeque::new(),
            given: VecDeque::new(),
            generation: 0,
        }
    }

    pub(crate) fn get(&self, ino: u64) -> Option<&Inode> {
        self.inodes.get(&ino)
    }

    pub(crate) fn get_mut(&mut self, ino: u64) -> Option<&mut Inode> {
        self.inodes.get_mut(&ino)
    }

    pub(crate) fn child(&self, parent: u64, name: &str) -> Option<u64> {
        self.children.get(&(parent, name.to_owned())).copied()
    }

    /// Whether S3 said recently (until a time still ahead) that the name does not exist.
    pub(crate) fn is_known_absent(&self, parent: u64, name: &str, now: Instant) -> bool {
        self.absent
            .get(&(parent, name.to_owned()))
            .is_some_and(|until| *until > now)
    }

    pub(crate) fn remember_absent(&mut self, parent: u64, name: &str, until: Instant) {
        if self.absent.len() >= ABSENT_PRUNE_AT {
            let now = Instant::now();
            self.absent.retain(|_, valid_until| *valid_until > now);
        }
        self.absent.insert((parent, name.to_owned()), until);
    }

    /// Inserts `inode` under its parent and name, reusing the number if the name is known
    /// with the same kind (so the kernel's view stays stable across refreshes).
    pub(crate) fn upsert(&mut self, inode: Inode) -> u64 {
        let key = (inode.parent, inode.name.clone());
        self.absent.remove(&key);
        if let Some(&ino) = self.children.get(&key)
            && let Some(existing) = self.inodes.get_mut(&ino)
            && existing.kind == inode.kind
        {
            let active_write = existing.active_write.take();
            let pending = existing.pending_metadata_since;
            let listing = existing.listing_valid_until;
            let lookups = existing.lookups;
            // What the server says (a listing or a HEAD: no held change, no writer of
            // its own) must not undo a change we hold and have not sent yet.
            let from_server =
                inode.pending_metadata_since.is_none() && inode.active_write.is_none();
            let held = (from_server && pending.is_some()).then(|| {
                (
                    existing.metadata,
                    existing.metadata_loaded,
                    existing.foreign.take(),
                )
            });
            let earlier_times = existing.metadata;
            *existing = inode;
            if existing.kind == Kind::Directory {
                existing.metadata.keep_later_times(&earlier_times);
            }
            if let Some((metadata, loaded, foreign)) = held {
                existing.metadata = metadata;
                existing.metadata_loaded = loaded;
                existing.foreign = foreign;
            }
            existing.active_write = existing.active_write.take().or(active_write);
            existing.pending_metadata_since = existing.pending_metadata_since.or(pending);
            existing.listing_valid_until = existing.listing_valid_until.or(listing);
            existing.lookups = lookups;
            if existing.pending_metadata_since.is_some() {
                self.held.insert(ino);
            }
            return ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.children.insert(key, ino);
        if inode.pending_metadata_since.is_some() {
            self.held.insert(ino);
        }
        self.inodes.insert(ino, inode);
        self.unreferenced.push_back(ino);
        ino
    }

    /// The generation now: take it before asking S3 for a listing, and a child
    /// [`Self::touch`]ed since is newer than what the listing can show.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Records that this mount just changed what S3 holds for `ino` (an upload
    /// completed, a marker or symlink put, a rename landed): a listing already on its
    /// way may not show it, and must not undo it (we read our own writes).
    pub(crate) fn touch(&mut self, ino: u64) {
        self.generation += 1;
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.changed = self.generation;
        }
    }

    /// Records that `dir`'s entries changed now (a name made, removed or renamed in it),
    /// as POSIX says: its mtime and ctime move. Kept in memory (a marker PUT per new
    /// file would double a backup's requests); a refresh from S3 never moves them back.
    pub(crate) fn entries_changed(&mut self, dir: u64) {
        if let Some(inode) = self.inodes.get_mut(&dir)
            && inode.kind == Kind::Directory
        {
            let now = SystemTime::now();
            inode.metadata.mtime = Some(now);
            inode.metadata.ctime = Some(now);
        }
    }

    /// Holds a change of `ino` from `since` (see `write_behind`): the flusher sends it.
    pub(crate) fn hold(&mut self, ino: u64, since: Instant) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.pending_metadata_since.get_or_insert(since);
            self.held.insert(ino);
        }
    }

    /// The inodes holding a change, dropping from the index those that no longer do.
    pub(crate) fn held(&mut self) -> Vec<u64> {
        let inodes = &self.inodes;
        self.held.retain(|ino| {
            inodes
                .get(ino)
                .is_some_and(|inode| inode.pending_metadata_since.is_some())
        });
        self.held.iter().copied().collect()
    }

    /// Forgets the name (the inode stays while open handles may use it).
    pub(crate) fn unlink(&mut self, parent: u64, name: &str) -> Option<u64> {
        let ino = self.children.remove(&(parent, name.to_owned()))?;
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.unlinked = true;
        }
        Some(ino)
    }

    /// Names currently under `parent`.
    pub(crate) fn children_of(&self, parent: u64) -> Vec<(String, u64)> {
        self.children
            .range((parent, String::new())..(parent + 1, String::new()))
            .map(|((_, name), ino)| (name.clone(), *ino))
            .collect()
    }

    /// Whether `parent` has at least `count` names in the table.
    pub(crate) fn has_children(&self, parent: u64, count: usize) -> bool {
        self.children
            .range((parent, String::new())..(parent + 1, String::new()))
            .nth(count.saturating_sub(1))
            .is_some()
    }

    /// The kernel was handed an entry for `ino` (lookup, create, mkdir, symlink).
    pub(crate) fn remember(&mut self, ino: u64) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            if inode.lookups == 0 || inode.let_go {
                inode.let_go = false;
                self.given.push_back(ino);
            }
            inode.lookups += 1;
        }
    }

    /// The names (parent, name) of up to `max` files and symlinks the kernel holds that
    /// nobody has used for `idle` past their attributes' expiry: the caller asks the
    /// kernel to drop them, and its FORGET then takes them out of the table. What is
    /// ours for now (an upload, a held change) and directories stay. Each call looks
    /// at most at `max` entries, oldest first.
    pub(crate) fn idle_entries(
        &mut self,
        now: Instant,
        idle: Duration,
        max: usize,
    ) -> Vec<(u64, String)> {
        let mut idle_names = Vec::new();
        let mut kept = VecDeque::new();
        for _ in 0..self.given.len().min(max) {
            let Some(ino) = self.given.pop_front() else {
                break;
            };
            let Some(inode) = self.inodes.get_mut(&ino) else {
                continue;
            };
            if inode.lookups == 0 || inode.let_go {
                // Forgotten already, or asked: `remember` queues it again if it is used.
                continue;
            }
            let in_use = inode.kind == Kind::Directory
                || inode.exists_only_locally()
                || inode.unlinked
                || inode.valid_until + idle > now;
            if in_use {
                kept.push_back(ino);
                continue;
            }
            inode.let_go = true;
            idle_names.push((inode.parent, inode.name.clone()));
        }
        self.given.extend(kept);
        idle_names
    }

    /// The kernel dropped `count` of its entries for `ino`. An inode it no longer
    /// references leaves the table unless something of ours is pending on it (an
    /// upload, a held change) or it has children still in the table; its parent's
    /// listing then no longer counts as complete.
    pub(crate) fn forget(&mut self, ino: u64, count: u64) {
        if ino == ROOT_INO {
            return;
        }
        let Some(inode) = self.inodes.get_mut(&ino) else {
            return;
        };
        inode.lookups = inode.lookups.saturating_sub(count);
        // A fresh inode may have just been handed to the kernel, its count not taken
        // yet (lookup answers, then counts): the sweep takes it once it expired.
        if inode.lookups > 0 {
            return;
        }
        if inode.exists_only_locally()
            || inode.valid_until > Instant::now()
            || self.has_children(ino, 1)
        {
            // Unreferenced now: the sweep takes it when nothing keeps it any more.
            self.unreferenced.push_back(ino);
            return;
        }
        let Some(inode) = self.inodes.remove(&ino) else {
            return;
        };
        let key = (inode.parent, inode.name);
        if self.children.get(&key) == Some(&ino) {
            self.children.remove(&key);
            if let Some(parent) = self.inodes.get_mut(&key.0) {
                parent.listing_valid_until = None;
            }
        }
    }

    /// Drops inodes the kernel never held (names a listing showed that nobody looked
    /// up) once they and their directory's listing have expired: they would be fetched
    /// again anyway. Returns how many went.
    pub(crate) fn prune_unreferenced(&mut self, now: Instant) -> usize {
        let listing_expired = |parent: Option<&Inode>| {
            parent.is_none_or(|p| p.listing_valid_until.is_none_or(|until| until <= now))
        };
        let mut pruned = 0;
        let mut kept = VecDeque::new();
        // Oldest first; stop at the first one still fresh (those after it are younger).
        while let Some(ino) = self.unreferenced.pop_front() {
            let Some(inode) = self.inodes.get(&ino) else {
                continue;
            };
            if inode.lookups > 0 {
                // The kernel holds it: `forget` takes it when it lets go.
                continue;
            }
            if inode.valid_until > now {
                self.unreferenced.push_front(ino);
                break;
            }
            let doomed = !inode.exists_only_locally()
                && listing_expired(self.inodes.get(&inode.parent))
                && !self.has_children(ino, 1);
            if !doomed {
                kept.push_back(ino);
                continue;
            }
            if let Some(inode) = self.inodes.remove(&ino) {
                let key = (inode.parent, inode.name);
                if self.children.get(&key) == Some(&ino) {
                    self.children.remove(&key);
                }
                pruned += 1;
            }
        }
        // Not yet (ours for now, or its directory's listing still stands): look again
        // at the next sweep.
        self.unreferenced.extend(kept);
        pruned
    }

    /// How many inodes the table holds.
    pub(crate) fn count(&self) -> usize {
        self.inodes.len()
    }

    /// Moves `ino` to a new parent and name, rewriting the paths of everything below it.
    pub(crate) fn rename(&mut self, ino: u64, new_parent: u64, new_name: &str, new_path: String) {
        let Some(inode) = self.inodes.get_mut(&ino) else {
            return;
        };
        let old_key = (inode.parent, inode.name.clone());
        let old_path = std::mem::replace(&mut inode.path, new_path.clone());
        inode.parent = new_parent;
        inode.name = new_name.to_owned();
        let kind = inode.kind;
        if self.children.get(&old_key) == Some(&ino) {
            self.children.remove(&old_key);
        }
        self.absent.remove(&(new_parent, new_name.to_owned()));
        self.touch(ino);
        if let Some(replaced) = self.children.insert((new_parent, new_name.to_owned()), ino)
            && replaced != ino
            && let Some(replaced) = self.inodes.get_mut(&replaced)
        {
            replaced.unlinked = true;
        }
        if kind == Kind::Directory {
            let old_prefix = format!("{old_path}/");
            for other in self.inodes.values_mut() {
                if let Some(rest) = other.path.strip_prefix(&old_prefix) {
                    other.path = format!("{new_path}/{rest}");
                }
            }
        }
    }

    /// Every inode with an upload in progress (for unmount).
    pub(crate) fn active_writes(&self) -> Vec<Arc<ActiveWrite>> {
        self.inodes
            .values()
            .filter_map(|inode| inode.active_write.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inode(parent: u64, name: &str, valid_until: Instant) -> Inode {
        Inode::new(parent, name, name, Kind::File, valid_until)
    }

    fn table() -> InodeTable {
        InodeTable::new(inode(
            ROOT_INO,
            "",
            Instant::now() + Duration::from_secs(3600),
        ))
    }

    #[test]
    fn a_listed_name_nobody_looked_up_is_swept_once_it_expired() {
        let mut table = table();
        let now = Instant::now();
        let stale = table.upsert(inode(ROOT_INO, "stale", now));
        let fresh = table.upsert(inode(ROOT_INO, "fresh", now + Duration::from_secs(60)));
        assert_eq!(table.prune_unreferenced(now + Duration::from_millis(1)), 1);
        assert!(table.get(stale).is_none());
        assert!(table.get(fresh).is_some(), "still fresh");
        assert_eq!(table.prune_unreferenced(now + Duration::from_secs(61)), 1);
        assert_eq!(table.count(), 1, "only the root is left");
    }

    #[test]
    fn a_name_the_kernel_holds_stays_until_it_is_forgotten_and_then_goes() {
        let mut table = table();
        let now = Instant::now();
        let held = table.upsert(inode(ROOT_INO, "held", now));
        table.remember(held);
        assert_eq!(table.prune_unreferenced(now + Duration::from_secs(1)), 0);
        table.forget(held, 1);
        assert!(
            table.get(held).is_none(),
            "expired and unreferenced: gone at once"
        );
    }

    #[test]
    fn a_forgotten_fresh_name_is_swept_later_not_kept_forever() {
        let mut table = table();
        let now = Instant::now();
        let ino = table.upsert(inode(ROOT_INO, "f", now + Duration::from_millis(50)));
        table.remember(ino);
        // The sweep sees it held by the kernel and lets go of it; forget comes later.
        assert_eq!(table.prune_unreferenced(now), 0);
        table.forget(ino, 1);
        assert!(table.get(ino).is_some(), "fresh: kept for now");
        assert_eq!(table.prune_unreferenced(now + Duration::from_secs(1)), 1);
    }

    #[test]
    fn the_held_index_lists_exactly_the_inodes_holding_a_change() {
        let mut table = table();
        let now = Instant::now();
        let a = table.upsert(inode(ROOT_INO, "a", now));
        let b = table.upsert(inode(ROOT_INO, "b", now));
        table.hold(a, now);
        assert_eq!(table.held(), [a]);
        table.get_mut(a).unwrap().pending_metadata_since = None;
        table.hold(b, now);
        assert_eq!(table.held(), [b], "a's change went: dropped from the index");
    }

    #[test]
    fn an_idle_file_the_kernel_holds_is_given_back_once_and_leaves_at_its_forget() {
        let mut table = table();
        let now = Instant::now();
        let idle = Duration::from_secs(10);
        let file = table.upsert(inode(ROOT_INO, "f", now));
        table.remember(file);
        let mut dir = inode(ROOT_INO, "d", now);
        dir.kind = Kind::Directory;
        let dir = table.upsert(dir);
        table.remember(dir);
        let held = table.upsert(inode(ROOT_INO, "held", now));
        table.remember(held);
        table.hold(held, now);
        assert!(
            table
                .idle_entries(now + Duration::from_secs(5), idle, 100)
                .is_empty()
        );
        let later = now + Duration::from_secs(11);
        assert_eq!(
            table.idle_entries(later, idle, 100),
            vec![(ROOT_INO, "f".to_owned())],
            "the idle file only: not the directory, not a held change"
        );
        assert!(
            table.idle_entries(later, idle, 100).is_empty(),
            "asked once"
        );
        table.forget(file, 1);
        assert!(table.get(file).is_none());
        // Used again after being let go: queued again.
        let again = table.upsert(inode(ROOT_INO, "g", now));
        table.remember(again);
        assert_eq!(table.idle_entries(later, idle, 100).len(), 1);
        table.remember(again);
        assert_eq!(table.idle_entries(later, idle, 100).len(), 1);
    }
}
