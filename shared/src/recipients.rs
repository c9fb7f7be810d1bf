//! Named recipients of a restricted share.
//!
//! Each recipient gets an onion service of their own, restricted to their own key: their own
//! address and key, which reach the share and nothing else. Revoking a recipient shuts their
//! service down and deletes its keys, so the address is gone for good — as for an ended share —
//! while the other recipients' services go on untouched.
//!
//! Why not one service with several keys (Arti's restricted discovery takes a list, reloaded
//! live): removing a key from that list does not revoke anyone. A client that already holds the
//! service's descriptor keeps reaching it through the same introduction points, which are not
//! rotated when the list changes (Arti's own documentation says so: restricted discovery is DoS
//! resistance, not access control). Separate services also tell the owner whose link leaked,
//! and keep recipients from learning of each other.

use serde::{Deserialize, Serialize};

/// Most recipients a share may have (each is an onion service with its own circuits).
pub const MAX_RECIPIENTS: usize = 16;
/// Longest recipient name, in bytes of UTF-8.
pub const MAX_RECIPIENT_NAME_BYTES: usize = 40;

/// Where a recipient's service is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RecipientState {
    /// Launched; not yet reached by the probe.
    Publishing,
    /// Reachable with the recipient's key.
    Live,
    /// Revoked by the owner: the address and key are gone.
    Revoked,
}

/// One recipient as the API, the UI and the CLI see them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RecipientView {
    /// The owner's name for them (never sent to anyone).
    pub name: String,
    /// Their onion link, once launched and until revoked.
    pub link: Option<String>,
    /// Their key (base32 of an x25519 secret: what Tor Browser asks for, and `veilshare get
    /// --key` takes), until revoked.
    pub client_key: Option<String>,
    /// Where their service is.
    pub state: RecipientState,
    /// Unix time in seconds of the revocation.
    pub revoked_at: Option<u64>,
}

/// `POST /api/shares/{id}/recipients`: add a recipient to a share that has named recipients.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AddRecipient {
    /// See [`check_name`].
    pub name: String,
}

/// Checks a recipient's name and returns it trimmed: 1 to [`MAX_RECIPIENT_NAME_BYTES`] bytes of
/// letters, digits, spaces, `-`, `_`, `.` and `@`. The error is a message for the user.
pub fn check_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("a recipient needs a name".into());
    }
    if name.len() > MAX_RECIPIENT_NAME_BYTES {
        return Err(format!(
            "the recipient name {name:?} is longer than {MAX_RECIPIENT_NAME_BYTES} bytes"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.' | '@')))
    {
        return Err(format!(
            "the recipient name {name:?} contains {bad:?}: use letters, digits, spaces, - _ . @"
        ));
    }
    Ok(name.to_owned())
}

/// Checks that `name` can join `existing` (names already given, revoked ones included: a name
/// is never reused, so the owner's history stays unambiguous).
pub fn check_new<'a>(
    name: &str,
    existing: impl IntoIterator<Item = &'a str>,
) -> Result<String, String> {
    let name = check_name(name)?;
    let mut count = 0;
    for other in existing {
        if other.eq_ignore_ascii_case(&name) {
            return Err(format!("there is already a recipient named {name:?}"));
        }
        count += 1;
    }
    if count >= MAX_RECIPIENTS {
        return Err(format!(
            "a share can have at most {MAX_RECIPIENTS} recipients"
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_trimmed_and_never_reused() {
        assert_eq!(check_name("  Alice B. "), Ok("Alice B.".to_owned()));
        assert!(check_name("   ").is_err());
        assert!(check_name("a/b").expect_err("a slash").contains("'/'"));
        assert!(check_name("x\u{7}").is_err());
        assert!(check_name(&"a".repeat(41)).is_err());
        assert!(check_new("ALICE", ["alice"]).is_err());
        assert_eq!(check_new("bob", ["alice"]), Ok("bob".to_owned()));
        let many: Vec<String> = (0..MAX_RECIPIENTS).map(|i| format!("r{i}")).collect();
        let error = check_new("one more", many.iter().map(String::as_str)).expect_err("too many");
        assert!(error.contains("at most"), "{error}");
    }
}
