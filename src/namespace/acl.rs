//! POSIX ACLs, kept as Linux hands them over: the `system.posix_acl_access` and
//! `system.posix_acl_default` extended attributes, stored with the others (s3fs keeps
//! them the same way). The kernel enforces them (the mount asks for FUSE_POSIX_ACL
//! when it checks permissions, i.e. with `--allow-other`); what it leaves to us is
//! what a local filesystem's `set_acl`, `chmod` and `create` do:
//! - an access ACL sets the mode's permission bits, and one equivalent to the mode
//!   is not stored at all;
//! - chmod rewrites the access ACL's owner, mask (or group) and other entries;
//! - a name made in a directory with a default ACL inherits it, masked by the mode
//!   asked for (the umask does not apply), and a new directory inherits it as its own
//!   default too.
//!
//! The value is Linux's xattr form: a little-endian u32 version (2), then per entry
//! a u16 tag, a u16 permission set and a u32 id.

use std::sync::Arc;

use super::error::{FsError, FsResult};
use super::inode::{Kind, ROOT_INO};
use super::xattr::{Xattrs, check_flags, headers_with};
use super::{AttributeChanges, Namespace};
use crate::s3::ObjectHeaders;

pub(crate) const ACCESS: &str = "system.posix_acl_access";
pub(crate) const DEFAULT: &str = "system.posix_acl_default";

const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    tag: u16,
    perm: u16,
    id: u32,
}

/// One ACL, parsed and checked as the kernel's `posix_acl_valid` would.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Acl(Vec<Entry>);

impl Acl {
    pub(crate) fn parse(value: &[u8]) -> FsResult<Self> {
        let invalid = |why: &str| FsError::new(libc::EINVAL, format!("POSIX ACL {why}: EINVAL"));
        let (header, body) = value
            .split_at_checked(4)
            .ok_or_else(|| invalid("too short"))?;
        if u32::from_le_bytes(header.try_into().unwrap_or_default()) != VERSION {
            return Err(invalid("of an unknown version"));
        }
        if body.len() % 8 != 0 {
            return Err(invalid("of a length that is not whole entries"));
        }
        let entries: Vec<Entry> = body
            .chunks_exact(8)
            .map(|e| Entry {
                tag: u16::from_le_bytes([e[0], e[1]]),
                perm: u16::from_le_bytes([e[2], e[3]]),
                id: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            })
            .collect();
        let count = |tag| entries.iter().filter(|e| e.tag == tag).count();
        if entries.iter().any(|e| {
            e.perm & !7 != 0 || ![USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER].contains(&e.tag)
        }) {
            return Err(invalid("with an unknown tag or permission"));
        }
        if count(USER_OBJ) != 1 || count(GROUP_OBJ) != 1 || count(OTHER) != 1 || count(MASK) > 1 {
            return Err(invalid("without exactly one owner, group and other entry"));
        }
        if (count(USER) + count(GROUP) > 0) && count(MASK) == 0 {
            return Err(invalid("naming users or groups without a mask"));
        }
        Ok(Self(entries))
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut value = VERSION.to_le_bytes().to_vec();
        for e in &self.0 {
            value.extend_from_slice(&e.tag.to_le_bytes());
            value.extend_from_slice(&e.perm.to_le_bytes());
            value.extend_from_slice(&e.id.to_le_bytes());
        }
        value
    }

    /// Only the owner, group and other entries: the mode says all of it.
    pub(crate) fn is_minimal(&self) -> bool {
        self.0
            .iter()
            .all(|e| [USER_OBJ, GROUP_OBJ, OTHER].contains(&e.tag))
    }

    /// The mode's permission bits (0o777) the ACL implies: the group bits are the
    /// mask's when there is one.
    pub(crate) fn mode_bits(&self) -> u32 {
        let perm = |tag| {
            self.0
                .iter()
                .find(|e| e.tag == tag)
                .map_or(0, |e| u32::from(e.perm))
        };
        let group = if self.has(MASK) {
            perm(MASK)
        } else {
            perm(GROUP_OBJ)
        };
        perm(USER_OBJ) << 6 | group << 3 | perm(OTHER)
    }

    /// chmod: the owner, mask (or group) and other entries take the new bits.
    pub(crate) fn chmod(&mut self, bits: u32) {
        self.each_class(bits, |entry, class| entry.perm = class);
    }

    /// The access ACL and permission bits of a name made with `mode` under a
    /// directory whose default ACL is `self`: each class keeps only what the mode
    /// allows it.
    pub(crate) fn inherit(&self, mode: u32) -> (Self, u32) {
        let mut inherited = self.clone();
        inherited.each_class(mode, |entry, class| entry.perm &= class);
        let bits = inherited.mode_bits();
        (inherited, bits)
    }

    /// Calls `f` with the owner, mask (or, without one, group) and other entries and
    /// the bits of `mode` for that class.
    fn each_class(&mut self, mode: u32, mut f: impl FnMut(&mut Entry, u16)) {
        let group_tag = if self.has(MASK) { MASK } else { GROUP_OBJ };
        for entry in &mut self.0 {
            let shift = match entry.tag {
                USER_OBJ => 6,
                OTHER => 0,
                tag if tag == group_tag => 3,
                _ => continue,
            };
            f(entry, ((mode >> shift) & 7) as u16);
        }
    }

    fn has(&self, tag: u16) -> bool {
        self.0.iter().any(|e| e.tag == tag)
    }
}

impl Namespace {
    /// setxattr of an ACL: checked, stored (an access ACL only when the mode cannot
    /// say it), and an access ACL's permission bits made the mode's.
    pub(super) fn set_acl(&self, ino: u64, name: &str, value: &[u8], flags: i32) -> FsResult<()> {
        let acl = Acl::parse(value)?;
        let current = self.getattr(ino)?;
        if name == DEFAULT && current.kind != Kind::Directory {
            return Err(FsError::new(
                libc::EACCES,
                format!("inode {ino}: a default ACL is only for directories: EACCES"),
            ));
        }
        let mut xattrs = self.xattrs_of(ino)?;
        check_flags(&xattrs, name, flags)?;
        if name == ACCESS && acl.is_minimal() {
            xattrs.remove(ACCESS);
        } else {
            xattrs.insert(name.to_owned(), acl.encode());
        }
        self.store_xattrs(ino, &xattrs)?;
        let perm = u32::from(current.perm);
        if name == ACCESS && perm & 0o777 != acl.mode_bits() {
            let changes = AttributeChanges {
                mode: Some(perm & 0o7000 | acl.mode_bits()),
                ..AttributeChanges::default()
            };
            self.setattr(ino, changes)?;
        }
        Ok(())
    }

    /// After a chmod: the access ACL, if any, takes the new bits.
    pub(super) fn chmod_acl(&self, ino: u64, mode: u32) -> FsResult<()> {
        let mut xattrs = self.known_xattrs(ino);
        let Some(Ok(mut acl)) = xattrs.get(ACCESS).map(|v| Acl::parse(v)) else {
            return Ok(());
        };
        if acl.mode_bits() == mode & 0o777 {
            return Ok(());
        }
        acl.chmod(mode);
        xattrs.insert(ACCESS.to_owned(), acl.encode());
        self.store_xattrs(ino, &xattrs)
    }

    /// What a name made under `parent` with `mode` gets from the parent's default ACL:
    /// its permission bits (the umask applied only when there is none) and the headers
    /// carrying its own ACLs.
    pub(super) fn inherit_acl(
        &self,
        parent: u64,
        mode: u32,
        umask: u32,
        kind: Kind,
    ) -> FsResult<(u32, Option<Arc<ObjectHeaders>>)> {
        // From the headers the table holds (the path walk to `parent` loaded them): no
        // request per new name, and no failure of create for a network error here.
        let default = if parent == ROOT_INO {
            None
        } else {
            self.known_xattrs(parent).remove(DEFAULT)
        };
        let Some(Ok(default)) = default.map(|v| Acl::parse(&v)) else {
            return Ok((mode & !umask & 0o7777, None));
        };
        let (access, bits) = default.inherit(mode);
        let mut xattrs = Xattrs::new();
        if !access.is_minimal() {
            xattrs.insert(ACCESS.to_owned(), access.encode());
        }
        if kind == Kind::Directory {
            xattrs.insert(DEFAULT.to_owned(), default.encode());
        }
        Ok((mode & 0o7000 | bits, headers_with(&xattrs).map(Arc::new)))
    }

    /// The attributes in the table's copy of the object's headers (no request).
    fn known_xattrs(&self, ino: u64) -> Xattrs {
        self.table()
            .get(ino)
            .and_then(|inode| inode.foreign.clone())
            .map(|foreign| super::xattr::decoded(&foreign))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        Acl(entries
            .iter()
            .map(|&(tag, perm, id)| Entry { tag, perm, id })
            .collect())
        .encode()
    }

    const NONE: u32 = u32::MAX;

    #[test]
    fn a_named_user_entry_makes_the_mask_the_group_bits() {
        let value = acl(&[
            (USER_OBJ, 6, NONE),
            (USER, 7, 1000),
            (GROUP_OBJ, 4, NONE),
            (MASK, 7, NONE),
            (OTHER, 0, NONE),
        ]);
        let parsed = Acl::parse(&value).unwrap();
        assert_eq!(parsed.encode(), value);
        assert!(!parsed.is_minimal());
        assert_eq!(parsed.mode_bits(), 0o670);
    }

    #[test]
    fn chmod_rewrites_owner_mask_and_other_but_not_named_entries() {
        let mut parsed = Acl::parse(&acl(&[
            (USER_OBJ, 6, NONE),
            (USER, 7, 1000),
            (GROUP_OBJ, 4, NONE),
            (MASK, 7, NONE),
            (OTHER, 0, NONE),
        ]))
        .unwrap();
        parsed.chmod(0o751);
        assert_eq!(parsed.mode_bits(), 0o751);
        assert!(parsed.0.contains(&Entry {
            tag: USER,
            perm: 7,
            id: 1000
        }));
        assert!(parsed.0.contains(&Entry {
            tag: GROUP_OBJ,
            perm: 4,
            id: NONE
        }));
    }

    #[test]
    fn inheriting_masks_each_class_by_the_mode() {
        let default = Acl::parse(&acl(&[
            (USER_OBJ, 7, NONE),
            (GROUP, 7, 50),
            (GROUP_OBJ, 5, NONE),
            (MASK, 7, NONE),
            (OTHER, 5, NONE),
        ]))
        .unwrap();
        let (access, bits) = default.inherit(0o644);
        assert_eq!(bits, 0o644);
        assert_eq!(access.mode_bits(), 0o644);
    }

    #[test]
    fn malformed_values_are_einval() {
        for value in [
            vec![1, 0],
            acl(&[(USER_OBJ, 6, NONE)]),
            acl(&[(USER_OBJ, 6, NONE), (GROUP_OBJ, 4, NONE), (OTHER, 9, NONE)]),
            acl(&[
                (USER_OBJ, 6, NONE),
                (USER, 6, 7),
                (GROUP_OBJ, 4, NONE),
                (OTHER, 0, NONE),
            ]),
            {
                let mut v = acl(&[(USER_OBJ, 6, NONE), (GROUP_OBJ, 4, NONE), (OTHER, 0, NONE)]);
                v[0] = 1;
                v
            },
        ] {
            assert_eq!(Acl::parse(&value).unwrap_err().errno(), libc::EINVAL);
        }
    }
}
