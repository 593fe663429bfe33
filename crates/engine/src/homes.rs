//! Which shard each recent `request_id` belongs to, so that idempotency covers the whole data
//! directory, not one shard.
//!
//! Each shard remembers the outcomes of its own requests (the durable [`crate::DedupTable`]).
//! A request is routed by its keys (a SKU, a market), so a retry with the same body always meets
//! its first outcome on the same shard. What one shard cannot see is the same `request_id` sent
//! with another body that routes elsewhere: this index catches it (`request_id_reused`).
//!
//! The index is not logged: it is rebuilt at start from every shard's table (which is in the
//! snapshots and the log), and kept while the process runs. An id is *claimed* before its
//! command is submitted and *settled* when the outcome arrives; an id whose every request was
//! refused before a decision (overloaded, unavailable, too large) is forgotten, as the API says.
//! Bounds: as the shards' tables together (count and retention), evicting the oldest first.

use cairn_types::ShardId;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Stripes of the index: requests on different ids rarely wait for each other.
const STRIPES: usize = 32;

/// One id's home.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Home {
    shard: ShardId,
    /// Requests with this id between claim and settle.
    pending: u32,
    /// Whether a shard remembered an outcome for it (so it must be kept).
    remembered: bool,
    /// When it was first claimed (or remembered, at start), in milliseconds of the caller's clock.
    since_ms: u64,
}

#[derive(Default)]
struct Stripe {
    homes: HashMap<String, Home>,
    /// Ids in claim order, for eviction; an id may appear again after it was forgotten.
    order: VecDeque<(String, u64)>,
}

/// The index.
pub struct RequestHomes {
    stripes: Vec<Mutex<Stripe>>,
    /// Most ids per stripe.
    stripe_entries_max: usize,
    retention_ms: u64,
}

/// The id already belongs to another shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClaimedElsewhere(pub ShardId);

impl RequestHomes {
    /// An empty index that keeps at most `entries_max` ids, each for `retention_ms`.
    #[must_use]
    pub fn new(entries_max: usize, retention_ms: u64) -> RequestHomes {
        RequestHomes {
            stripes: (0..STRIPES).map(|_| Mutex::default()).collect(),
            stripe_entries_max: entries_max.div_ceil(STRIPES).max(1),
            retention_ms,
        }
    }

    fn stripe(&self, id: &str) -> MutexGuard<'_, Stripe> {
        let index = (blake3::hash(id.as_bytes()).as_bytes()[0] as usize) % STRIPES;
        // The maps stay consistent across a panic elsewhere: every update is one insert/remove.
        self.stripes[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records an id a shard remembers (at start).
    pub fn remembered(&self, id: &str, shard: ShardId, at_ms: u64) {
        let mut stripe = self.stripe(id);
        stripe.homes.insert(
            id.to_string(),
            Home {
                shard,
                pending: 0,
                remembered: true,
                since_ms: at_ms,
            },
        );
        stripe.order.push_back((id.to_string(), at_ms));
        self.evict(&mut stripe, at_ms);
    }

    /// Claims `id` for a request routed to `shard` at `now_ms`.
    ///
    /// # Errors
    /// The id belongs to another shard: the request reuses it with another body.
    pub fn claim(&self, id: &str, shard: ShardId, now_ms: u64) -> Result<(), ClaimedElsewhere> {
        let mut stripe = self.stripe(id);
        self.evict(&mut stripe, now_ms);
        if let Some(home) = stripe.homes.get_mut(id) {
            if home.shard != shard {
                return Err(ClaimedElsewhere(home.shard));
            }
            home.pending = home.pending.saturating_add(1);
            return Ok(());
        }
        stripe.homes.insert(
            id.to_string(),
            Home {
                shard,
                pending: 1,
                remembered: false,
                since_ms: now_ms,
            },
        );
        stripe.order.push_back((id.to_string(), now_ms));
        Ok(())
    }

    /// Settles one claim of `id`: `decided` says whether its shard reached (or already had) a
    /// decision, which it then remembers.
    pub fn settle(&self, id: &str, decided: bool) {
        let mut stripe = self.stripe(id);
        let forget = match stripe.homes.get_mut(id) {
            Some(home) => {
                home.pending = home.pending.saturating_sub(1);
                home.remembered |= decided;
                home.pending == 0 && !home.remembered
            }
            None => false,
        };
        if forget {
            stripe.homes.remove(id);
        }
    }

    /// Forgets the oldest ids past the count and the retention; never one with a pending claim.
    fn evict(&self, stripe: &mut Stripe, now_ms: u64) {
        // Each entry is looked at once at most: a pending one goes to the back and stays.
        for _ in 0..stripe.order.len() {
            let Some((id, since_ms)) = stripe.order.front() else {
                break;
            };
            let over = stripe.order.len() > self.stripe_entries_max;
            let old = since_ms.saturating_add(self.retention_ms) < now_ms;
            if !over && !old {
                break;
            }
            let (id, since_ms) = (id.clone(), *since_ms);
            stripe.order.pop_front();
            // A stale entry (the id was forgotten and claimed again later) is just dropped.
            match stripe.homes.get(&id) {
                Some(home) if home.since_ms == since_ms && home.pending > 0 => {
                    stripe.order.push_back((id, since_ms));
                }
                Some(home) if home.since_ms == since_ms => {
                    stripe.homes.remove(&id);
                }
                _ => {}
            }
        }
    }

    /// Ids in the index.
    #[must_use]
    pub fn len(&self) -> usize {
        self.stripes
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).homes.len())
            .sum()
    }

    /// Whether the index is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_belongs_to_the_first_shard_that_claims_it() {
        let homes = RequestHomes::new(100, 1_000);
        assert_eq!(homes.claim("r1", ShardId(0), 10), Ok(()));
        assert_eq!(
            homes.claim("r1", ShardId(1), 11),
            Err(ClaimedElsewhere(ShardId(0)))
        );
        assert_eq!(homes.claim("r1", ShardId(0), 12), Ok(()), "a retry");
        homes.settle("r1", true);
        homes.settle("r1", true);
        assert_eq!(
            homes.claim("r1", ShardId(1), 13),
            Err(ClaimedElsewhere(ShardId(0)))
        );
    }

    #[test]
    fn undecided_requests_are_forgotten() {
        let homes = RequestHomes::new(100, 1_000);
        homes.claim("r1", ShardId(0), 10).expect("new");
        homes.claim("r1", ShardId(0), 10).expect("same shard");
        homes.settle("r1", false);
        assert_eq!(
            homes.claim("r1", ShardId(2), 11),
            Err(ClaimedElsewhere(ShardId(0))),
            "still pending"
        );
        homes.settle("r1", false);
        assert!(homes.is_empty());
        assert_eq!(homes.claim("r1", ShardId(2), 12), Ok(()));
    }

    #[test]
    fn ids_are_forgotten_by_age_and_count_but_never_while_pending() {
        let homes = RequestHomes::new(STRIPES, 100);
        homes.remembered("old", ShardId(0), 0);
        homes.claim("busy", ShardId(0), 0).expect("new");
        assert_eq!(
            homes.claim("old", ShardId(1), 50),
            Err(ClaimedElsewhere(ShardId(0)))
        );
        assert_eq!(homes.claim("old", ShardId(1), 101), Ok(()), "retention");
        assert_eq!(
            homes.claim("busy", ShardId(1), 500),
            Err(ClaimedElsewhere(ShardId(0))),
            "pending"
        );
        let homes = RequestHomes::new(STRIPES, u64::MAX);
        for n in 0..10 * STRIPES {
            homes.remembered(&format!("id{n}"), ShardId(0), n as u64);
        }
        assert!(homes.len() <= 2 * STRIPES, "bounded: {}", homes.len());
    }
}
