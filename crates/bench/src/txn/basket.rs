//! The SKUs and the reservations: a pool of SKUs per shard, routed as the server routes them, and
//! a fixed set of five-line baskets that each span exactly two shards (three lines on one, two on
//! the other), so that every reservation takes Cairn's two-phase path and PostgreSQL's
//! two-database path.

use crate::inventory::driver::SplitMix64;
use cairn_types::shard_for_key;

/// Lines of every reservation.
pub const LINES: usize = 5;
/// Lines on the shard that has more of them (the other has `LINES - LINES_ON_FIRST`).
pub const LINES_ON_FIRST: usize = 3;
/// Shards (and PostgreSQL databases) the reservations span.
pub const SHARDS: u16 = 2;

/// Most SKU names tried while filling the shards' pools: far more than any pool needs with a
/// hash that spreads keys evenly, and a bound if it ever did not.
const NAMES_TRIED_PER_SKU_MAX: usize = 64;

/// The SKUs of every shard and the baskets drawn from them.
pub(crate) struct Baskets {
    /// Every SKU, shard 0's first: index `s * per_shard + i` is SKU `i` of shard `s`.
    pub(crate) skus: Vec<String>,
    /// SKUs per shard.
    pub(crate) per_shard: usize,
    /// Each basket's lines as indices into `skus`, grouped by shard (shard 0's lines first, each
    /// group sorted by SKU name, so that PostgreSQL takes row locks in one global order).
    pub(crate) baskets: Vec<[usize; LINES]>,
}

impl Baskets {
    /// `per_shard` SKUs on each of the [`SHARDS`] shards, named `ct-{tag}-{n}`, and `count`
    /// baskets drawn uniformly from them with `seed`; basket 0 is the `hot` workload's.
    ///
    /// # Errors
    /// `per_shard` is below [`LINES_ON_FIRST`], or the names do not fill the shards.
    pub(crate) fn new(
        tag: &str,
        per_shard: usize,
        count: usize,
        seed: u64,
    ) -> Result<Baskets, String> {
        if per_shard < LINES_ON_FIRST {
            return Err(format!(
                "at least {LINES_ON_FIRST} SKUs per shard are needed, got {per_shard}"
            ));
        }
        let mut pools: Vec<Vec<String>> = vec![Vec::with_capacity(per_shard); usize::from(SHARDS)];
        let tries = per_shard * usize::from(SHARDS) * NAMES_TRIED_PER_SKU_MAX;
        for n in 0..tries {
            if pools.iter().all(|pool| pool.len() == per_shard) {
                break;
            }
            let name = format!("ct-{tag}-{n:06}");
            let shard = usize::from(shard_for_key(name.as_bytes(), SHARDS).0);
            if pools[shard].len() < per_shard {
                pools[shard].push(name);
            }
        }
        if pools.iter().any(|pool| pool.len() < per_shard) {
            return Err(format!(
                "{tries} SKU names did not give {per_shard} SKUs on each shard"
            ));
        }
        let skus: Vec<String> = pools.into_iter().flatten().collect();
        let mut rng = SplitMix64(seed);
        let baskets = (0..count)
            .map(|n| {
                // Alternate which shard gets three lines, so both shards see the same load.
                let first = n % usize::from(SHARDS);
                let mut lines = [0usize; LINES];
                let (on_first, on_second) = lines.split_at_mut(LINES_ON_FIRST);
                distinct(&mut rng, per_shard, first * per_shard, on_first);
                distinct(&mut rng, per_shard, (1 - first) * per_shard, on_second);
                lines.sort_unstable_by(|&a, &b| {
                    (a / per_shard, &skus[a]).cmp(&(b / per_shard, &skus[b]))
                });
                lines
            })
            .collect();
        Ok(Baskets {
            skus,
            per_shard,
            baskets,
        })
    }

    /// The shard (and database) of SKU `sku`.
    pub(crate) fn shard_of(&self, sku: usize) -> usize {
        sku / self.per_shard
    }
}

/// Fills `out` with distinct values of `offset..offset + n`.
fn distinct(rng: &mut SplitMix64, n: usize, offset: usize, out: &mut [usize]) {
    for i in 0..out.len() {
        loop {
            let pick = offset + rng.below(n);
            if !out[..i].contains(&pick) {
                out[i] = pick;
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_basket_has_five_distinct_skus_on_exactly_two_shards_as_the_server_routes_them() {
        let baskets = Baskets::new("t", 50, 200, 9).expect("baskets");
        assert_eq!(baskets.skus.len(), 100);
        for (index, sku) in baskets.skus.iter().enumerate() {
            let routed = usize::from(shard_for_key(sku.as_bytes(), SHARDS).0);
            assert_eq!(routed, baskets.shard_of(index), "{sku}");
        }
        let mut three_on = [0usize; 2];
        for basket in &baskets.baskets {
            let mut seen = basket.to_vec();
            seen.dedup();
            assert_eq!(seen.len(), LINES, "{basket:?}");
            let on_zero = basket.iter().filter(|&&s| baskets.shard_of(s) == 0).count();
            assert!(on_zero == 2 || on_zero == 3, "{basket:?}");
            three_on[usize::from(on_zero == 2)] += 1;
            let keys: Vec<(usize, &String)> = basket
                .iter()
                .map(|&s| (baskets.shard_of(s), &baskets.skus[s]))
                .collect();
            assert!(
                keys.is_sorted(),
                "grouped by shard, sorted by name: {keys:?}"
            );
        }
        assert_eq!(three_on, [100, 100]);
    }

    #[test]
    fn too_small_a_pool_is_refused() {
        assert!(Baskets::new("t", 2, 10, 1).is_err());
    }
}
