//! Named crash points, for the tests that kill the program at every durable step and check
//! what a restart finds (`docs/RELIABILITY.md`, section 1).
//!
//! In a debug build, `VEILSHARE_CRASH_AT=<point>:<n>` aborts the process the `n`-th time it
//! reaches `point` (counting from 1): no destructor runs, nothing is flushed, as after
//! `kill -9` or a power cut at that instant. Release builds compile [`point`] to nothing, so
//! the app users run cannot be made to crash by its environment.

/// Every crash point, in the order a share lives through them.
pub const POINTS: &[&str] = &[
    "upload.part_stored",
    "upload.collection_stored",
    "share.tagged",
    "share.recorded",
    "transfer.counted",
    "share.ended",
    "data.untagged",
    "data.deleted",
    "onion.keys_deleted",
    "recipient.revoked",
    "mirror.fetched",
    "direct.leased",
    "dropbox.part_written",
    "dropbox.tagged",
    "dropbox.item_recorded",
];

/// Aborts here if `VEILSHARE_CRASH_AT` names this point and this is its turn (debug builds).
#[inline]
pub fn point(name: &'static str) {
    #[cfg(debug_assertions)]
    armed::reached(name);
    #[cfg(not(debug_assertions))]
    let _ = name;
}

#[cfg(debug_assertions)]
mod armed {
    use std::sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    };

    /// The armed point and after how many passes it fires.
    fn target() -> &'static Option<(String, u32)> {
        static TARGET: OnceLock<Option<(String, u32)>> = OnceLock::new();
        TARGET.get_or_init(|| {
            let value = std::env::var("VEILSHARE_CRASH_AT").ok()?;
            let (name, n) = value.rsplit_once(':')?;
            Some((name.to_owned(), n.parse().ok()?))
        })
    }

    pub fn reached(name: &'static str) {
        static PASSES: AtomicU32 = AtomicU32::new(0);
        let Some((armed, n)) = target() else {
            return;
        };
        if armed != name {
            return;
        }
        if PASSES.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            tracing::error!(
                point = name,
                "crash point reached: aborting (VEILSHARE_CRASH_AT)"
            );
            std::process::abort();
        }
    }
}
