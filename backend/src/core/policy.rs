//! The pure rules of a share's policy: may a transfer start, what does a finished transfer
//! count, when is a share exhausted or expired.
//!
//! No I/O and no clock reads: the caller passes the time in. Everything here is deterministic
//! and covered by property tests.
//!
//! # Counting without knowing who downloads
//! Neither an onion service nor a plain listener can tell clients apart, so downloads are
//! counted in *copies of the content delivered*: every transfer adds the content bytes it sent
//! to the share's ledger, and each `content_size` bytes make one complete download. A whole
//! response adds one copy; an interrupted response adds what it sent, and its resume with
//! `Range` adds the rest, so the pair counts once. The bytes a share may ever send are bounded
//! by `max_downloads × content_size` plus a small slack (see [`slack`]) that absorbs what an
//! interrupted transfer had in socket buffers and lets its resume through; the slack is always
//! less than half a copy, so range tricks can never yield an extra copy.

use veilshare_shared::Policy;

/// The persisted counters of one share.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ledger {
    /// Complete downloads counted so far.
    pub completed: u32,
    /// Content bytes delivered that do not yet make a whole copy.
    pub partial_bytes: u64,
}

/// The transfers running now (not persisted: they die with the process).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flight {
    /// Transfers (responses) in flight.
    pub transfers: u32,
    /// Content bytes those transfers may still send.
    pub reserved_bytes: u64,
}

impl Flight {
    /// Downloads in flight, in copies of the content: the reserved bytes rounded up, so the
    /// parallel ranges of one fetch show as one download and any transfer as at least one.
    pub fn downloads(&self, content_size: u64) -> u32 {
        if content_size == 0 || self.transfers == 0 {
            return self.transfers;
        }
        let copies = self.reserved_bytes.div_ceil(content_size).max(1);
        u32::try_from(copies).unwrap_or(u32::MAX)
    }
}

/// Why a transfer may not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The share has ended or the expiry passed.
    #[error("this share has ended")]
    Ended,
    /// The downloads in flight already take up what the share still allows.
    #[error("all remaining downloads of this share are in progress")]
    Busy,
    /// What is left of the share's byte allowance is less than the request.
    #[error("this share has not enough download allowance left for that request")]
    OverBudget,
}

/// Bytes of slack granted above `max_downloads × content_size`: a quarter of a copy, at most
/// 32 MiB. Less than half a copy, so it can never add up to an extra download.
pub fn slack(content_size: u64) -> u64 {
    (content_size / 4).min(32 << 20)
}

/// When a share made at `now` (unix seconds) to last `ttl_secs` expires: on a whole minute,
/// at or before the asked moment (a share never lives longer than asked).
///
/// The expiry is public (the manifest, the page). To the second it would be the owner's clock
/// at creation plus a round number: the sender's clock for anyone who knows the lifetime
/// chosen, and a link between shares made in the same second. A lifetime under two minutes
/// (tests, mostly) keeps its exact second rather than losing most of itself to the rounding.
pub fn expiry(now: u64, ttl_secs: u64) -> u64 {
    let exact = now.saturating_add(ttl_secs);
    if ttl_secs < 120 {
        return exact;
    }
    exact - exact % 60
}

/// Whether the expiry has passed at `now` (unix seconds).
pub fn is_expired(policy: &Policy, now: u64) -> bool {
    policy.expires_at.is_some_and(|at| now >= at)
}

/// Whether the download limit has been reached.
pub fn is_exhausted(policy: &Policy, ledger: &Ledger) -> bool {
    policy
        .max_downloads
        .is_some_and(|max| ledger.completed >= max)
}

/// Downloads still allowed, when limited.
pub fn remaining(policy: &Policy, ledger: &Ledger) -> Option<u32> {
    policy
        .max_downloads
        .map(|max| max.saturating_sub(ledger.completed))
}

/// May a transfer of `payload` content bytes start now?
///
/// `live` is whether the share is in a state that serves (not publishing-failed, not ended).
pub fn admit(
    policy: &Policy,
    content_size: u64,
    ledger: &Ledger,
    flight: &Flight,
    live: bool,
    now: u64,
    payload: u64,
) -> Result<(), Refusal> {
    if !live || is_expired(policy, now) || is_exhausted(policy, ledger) {
        return Err(Refusal::Ended);
    }
    let Some(max) = policy.max_downloads else {
        return Ok(());
    };
    if content_size == 0 {
        // Nothing to measure in bytes: each transfer is a whole download.
        return if flight.transfers >= max.saturating_sub(ledger.completed) {
            Err(Refusal::Busy)
        } else {
            Ok(())
        };
    }
    let budget = u128::from(max) * u128::from(content_size) + u128::from(slack(content_size));
    let delivered =
        u128::from(ledger.completed) * u128::from(content_size) + u128::from(ledger.partial_bytes);
    if delivered + u128::from(payload) > budget {
        return Err(Refusal::OverBudget);
    }
    // What transfers in flight may still send is spoken for: a whole copy more than the
    // remaining downloads allow must wait. Ranges of one download (a parallel or resumed
    // fetch) add up to one copy, so they pass together.
    if delivered + u128::from(flight.reserved_bytes) + u128::from(payload) > budget {
        return Err(Refusal::Busy);
    }
    Ok(())
}

/// The ledger after a transfer that sent `sent` content bytes ended; `finished` is whether it
/// ran to its end. Returns the new ledger.
///
/// An empty share (size 0) cannot be measured in bytes: there a finished transfer counts one.
pub fn record_transfer(content_size: u64, ledger: Ledger, sent: u64, finished: bool) -> Ledger {
    if content_size == 0 {
        let completed = ledger.completed.saturating_add(u32::from(finished));
        return Ledger {
            completed,
            partial_bytes: 0,
        };
    }
    let total = ledger.partial_bytes.saturating_add(sent);
    let copies = total / content_size;
    Ledger {
        completed: ledger
            .completed
            .saturating_add(u32::try_from(copies).unwrap_or(u32::MAX)),
        partial_bytes: total % content_size,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn limited(max: u32) -> Policy {
        Policy {
            max_downloads: Some(max),
            expires_at: None,
        }
    }

    #[test]
    fn interrupted_then_resumed_counts_once() {
        let policy = limited(1);
        let size = 1000;
        let flight = Flight::default();
        let ledger = Ledger::default();
        admit(&policy, size, &ledger, &flight, true, 0, size).expect("first");
        let ledger = record_transfer(size, ledger, 400, false);
        assert_eq!(ledger.completed, 0);
        admit(&policy, size, &ledger, &flight, true, 0, 600).expect("resume");
        let ledger = record_transfer(size, ledger, 600, true);
        assert_eq!(ledger.completed, 1);
        assert!(is_exhausted(&policy, &ledger));
        assert_eq!(
            admit(&policy, size, &ledger, &flight, true, 0, 1),
            Err(Refusal::Ended)
        );
    }

    #[test]
    fn a_second_whole_copy_after_an_interrupted_one_is_refused_when_only_one_is_allowed() {
        let policy = limited(1);
        let size = 1000;
        let ledger = record_transfer(size, Ledger::default(), 900, false);
        assert_eq!(
            admit(&policy, size, &ledger, &Flight::default(), true, 0, size),
            Err(Refusal::OverBudget)
        );
    }

    #[test]
    fn expiry_is_inclusive_and_stops_new_transfers() {
        let policy = Policy {
            max_downloads: None,
            expires_at: Some(100),
        };
        let ledger = Ledger::default();
        let flight = Flight::default();
        assert!(admit(&policy, 10, &ledger, &flight, true, 99, 10).is_ok());
        assert_eq!(
            admit(&policy, 10, &ledger, &flight, true, 100, 10),
            Err(Refusal::Ended)
        );
    }

    #[test]
    fn empty_shares_count_finished_transfers() {
        let ledger = record_transfer(0, Ledger::default(), 0, false);
        assert_eq!(ledger.completed, 0);
        let ledger = record_transfer(0, ledger, 0, true);
        assert_eq!(ledger.completed, 1);
    }

    proptest! {
        /// Whatever sequence of ranged requests clients make, the bytes a share sends stay
        /// below `max + ½` copies, and the count never exceeds the limit.
        #[test]
        fn range_tricks_never_yield_an_extra_copy(
            max in 1u32..5,
            size in 1u64..10_000,
            requests in proptest::collection::vec((0.0f64..1.0, 0.0f64..1.0, any::<bool>()), 1..60),
        ) {
            let policy = limited(max);
            let mut ledger = Ledger::default();
            let mut sent_total: u128 = 0;
            for (start, cut, finished) in requests {
                let start = ((size as f64) * start) as u64;
                let payload = size - start;
                if admit(&policy, size, &ledger, &Flight::default(), true, 0, payload).is_err() {
                    continue;
                }
                let sent = if finished { payload } else { ((payload as f64) * cut) as u64 };
                sent_total += u128::from(sent);
                ledger = record_transfer(size, ledger, sent, finished);
            }
            prop_assert!(ledger.completed <= max);
            prop_assert!(sent_total * 2 < (2 * u128::from(max) + 1) * u128::from(size));
        }

        /// Whole downloads in flight never outnumber the downloads that remain.
        #[test]
        fn in_flight_never_exceeds_remaining(
            max in 1u32..20,
            completed in 0u32..20,
            in_flight in 0u32..40,
            size in 1u64..100_000,
        ) {
            let policy = limited(max);
            let ledger = Ledger { completed, partial_bytes: 0 };
            let flight = Flight { transfers: in_flight, reserved_bytes: u64::from(in_flight) * size };
            let admitted = admit(&policy, size, &ledger, &flight, true, 0, size).is_ok();
            prop_assert_eq!(admitted, completed < max && in_flight < max - completed);
        }

        /// However a download is cut into ranges, its ranges are admitted together when one
        /// download remains, and a second whole download is then refused as busy.
        #[test]
        fn ranges_of_one_download_pass_together(size in 1u64..1_000_000, parts in 1u64..16) {
            let policy = limited(1);
            let mut flight = Flight::default();
            let piece = size.div_ceil(parts);
            let mut start = 0;
            while start < size {
                let payload = piece.min(size - start);
                prop_assert!(admit(&policy, size, &Ledger::default(), &flight, true, 0, payload).is_ok());
                flight.transfers += 1;
                flight.reserved_bytes += payload;
                start += payload;
            }
            prop_assert_eq!(flight.downloads(size), 1);
            prop_assert_eq!(
                admit(&policy, size, &Ledger::default(), &flight, true, 0, size),
                Err(Refusal::Busy)
            );
        }

        /// Whole transfers each count exactly one download.
        #[test]
        fn whole_transfers_count_one_each(size in 1u64..1_000_000, n in 0u32..50) {
            let mut ledger = Ledger::default();
            for _ in 0..n {
                ledger = record_transfer(size, ledger, size, true);
            }
            prop_assert_eq!(ledger, Ledger { completed: n, partial_bytes: 0 });
        }

        /// An expiry is on a whole minute, never after the asked moment and at most a minute
        /// before it; short lifetimes keep their second.
        #[test]
        fn expiries_fall_on_the_minute_and_never_late(now in 0u64..4_000_000_000, ttl in 0u64..40_000_000) {
            let at = expiry(now, ttl);
            prop_assert!(at <= now + ttl);
            if ttl >= 120 {
                prop_assert_eq!(at % 60, 0);
                prop_assert!(at + 60 > now + ttl);
            } else {
                prop_assert_eq!(at, now + ttl);
            }
        }

        /// A share without limits admits anything until it expires.
        #[test]
        fn unlimited_until_expiry(now in 0u64..1000, expires in 0u64..1000, payload in any::<u64>()) {
            let policy = Policy { max_downloads: None, expires_at: Some(expires) };
            let result = admit(&policy, 1, &Ledger::default(), &Flight::default(), true, now, payload);
            prop_assert_eq!(result.is_ok(), now < expires);
        }
    }
}
