//! Owners and special mode bits: `grants.owners` and `grants.setid`, for the
//! `fs` import's `set-owner` and `set-mode`.
//!
//! A read-write grant lets a plugin change a file's permission bits, but not
//! make it setuid or setgid (a root-owned setuid file is a root shell) and
//! not give it to another user or group (a file given away can be used to
//! plant something in that user's name). Each needs its own grant.

use std::fmt;

use serde::Serialize;

use super::{Denial, Grants, Kind, grant_line};

/// `user`, `user:group` or `:group`, by name or number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct OwnerGrant {
    /// The user to give files to, when the grant names one.
    pub uid: Option<u32>,
    /// The group to give files to, when the grant names one.
    pub gid: Option<u32>,
    text: String,
}

impl From<OwnerGrant> for String {
    fn from(g: OwnerGrant) -> String {
        g.text
    }
}

impl fmt::Display for OwnerGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// setuid and setgid.
pub const SETID_BITS: u32 = 0o6000;

impl OwnerGrant {
    /// Parse `user`, `user:group` or `:group` as written in a grant.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (user, group) = match text.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (text, None),
        };
        let uid =
            match user {
                "" => None,
                name => Some(lookup_user(name).ok_or_else(|| {
                    format!("owner grant `{text}`: no user `{name}` on this host")
                })?),
            };
        let gid =
            match group {
                None | Some("") => None,
                Some(name) => Some(lookup_group(name).ok_or_else(|| {
                    format!("owner grant `{text}`: no group `{name}` on this host")
                })?),
            };
        if uid.is_none() && gid.is_none() {
            return Err(format!(
                "owner grant `{text}` must name a user, a group or both (\"www-data:www-data\")"
            ));
        }
        Ok(OwnerGrant {
            uid,
            gid,
            text: text.to_string(),
        })
    }
}

fn lookup_user(name: &str) -> Option<u32> {
    if let Ok(uid) = name.parse() {
        return Some(uid);
    }
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: getpwnam returns a pointer into static storage or null; it is
    // read at once, and config parsing runs before any hook thread.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    (!entry.is_null()).then(|| unsafe { (*entry).pw_uid })
}

fn lookup_group(name: &str) -> Option<u32> {
    if let Ok(gid) = name.parse() {
        return Some(gid);
    }
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: as for getpwnam above.
    let entry = unsafe { libc::getgrnam(name.as_ptr()) };
    (!entry.is_null()).then(|| unsafe { (*entry).gr_gid })
}

impl Grants {
    /// May a file owned by `current` be given to `(uid, gid)`? Keeping the
    /// current owner or group is always allowed.
    pub fn check_owner(
        &self,
        path: &str,
        current: (u32, u32),
        uid: u32,
        gid: u32,
    ) -> Result<(), Denial> {
        let user_ok = uid == current.0 || self.owners.iter().any(|o| o.uid == Some(uid));
        let group_ok = gid == current.1 || self.owners.iter().any(|o| o.gid == Some(gid));
        if user_ok && group_ok {
            return Ok(());
        }
        Err(Denial::new(
            Kind::Owner,
            format!("chown {uid}:{gid} {path}"),
            grant_line("owners", &format!("{uid}:{gid}")),
        ))
    }

    /// May `mode` be set? setuid and setgid need `grants.setid = true`.
    pub fn check_mode(&self, path: &str, mode: u32) -> Result<(), Denial> {
        if mode & SETID_BITS == 0 || self.setid {
            return Ok(());
        }
        Err(Denial::new(
            Kind::Setid,
            format!("chmod {mode:o} {path}"),
            "grants.setid = true",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_and_setid() {
        let none = Grants::default();
        assert!(none.check_owner("/x", (33, 33), 33, 33).is_ok());
        let d = none.check_owner("/x", (33, 33), 0, 0).unwrap_err();
        assert_eq!(d.grant, r#"grants.owners = ["0:0"]"#);
        let some = Grants {
            owners: vec![
                OwnerGrant::parse("0:0").unwrap(),
                OwnerGrant::parse(":1").unwrap(),
            ],
            ..Grants::default()
        };
        assert!(some.check_owner("/x", (33, 33), 0, 1).is_ok());
        assert!(some.check_owner("/x", (33, 33), 1, 33).is_err());
        assert!(OwnerGrant::parse("root").unwrap().uid == Some(0));
        assert!(OwnerGrant::parse("no-such-user-here").is_err());
        assert!(OwnerGrant::parse(":").is_err());

        assert!(none.check_mode("/x", 0o755).is_ok());
        assert!(none.check_mode("/x", 0o1777).is_ok());
        let d = none.check_mode("/x", 0o4755).unwrap_err();
        assert_eq!(d.grant, "grants.setid = true");
        let allowed = Grants {
            setid: true,
            ..Grants::default()
        };
        assert!(allowed.check_mode("/x", 0o2755).is_ok());
    }
}
