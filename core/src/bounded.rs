//! The one eviction rule of keel's in-process maps (principals, verified tokens, cached
//! queries): bounded without a background sweeper, and never rescanned on every insert.

use std::collections::HashMap;
use std::hash::Hash;

/// Makes room for one more entry in `entries`, which holds at most `capacity`. Only when
/// full: the entries `keep` rejects (expired, stale) go, and if that frees less than a
/// quarter of the capacity everything goes. A full map of live entries is thus scanned
/// once per quarter of its capacity's insertions, not once per insertion under the
/// write lock, and a miss after the clear just loads again.
pub(crate) fn make_room<K: Eq + Hash, V>(
    entries: &mut HashMap<K, V>,
    capacity: usize,
    mut keep: impl FnMut(&V) -> bool,
) {
    if entries.len() < capacity {
        return;
    }
    entries.retain(|_, value| keep(value));
    if entries.len() > capacity / 4 * 3 {
        entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(capacity: usize, live: impl Fn(usize) -> bool) -> HashMap<usize, bool> {
        (0..capacity).map(|n| (n, live(n))).collect()
    }

    #[test]
    fn a_full_map_sheds_what_is_not_kept_and_clears_when_that_frees_too_little() {
        // Half stale: the stale half goes, the live half stays.
        let mut half = full(8, |n| n % 2 == 0);
        make_room(&mut half, 8, |live| *live);
        assert_eq!(half.len(), 4);
        // One stale of eight: not worth keeping the rest, everything goes.
        let mut mostly_live = full(8, |n| n != 0);
        make_room(&mut mostly_live, 8, |live| *live);
        assert!(mostly_live.is_empty());
        // Not full: untouched, stale or not.
        let mut roomy = full(7, |_| false);
        make_room(&mut roomy, 8, |live| *live);
        assert_eq!(roomy.len(), 7);
    }

    #[test]
    fn there_is_always_room_for_one_more_whatever_the_capacity() {
        for capacity in 1..=16 {
            let mut all_live = full(capacity, |_| true);
            make_room(&mut all_live, capacity, |live| *live);
            assert!(all_live.len() < capacity, "capacity {capacity}");
        }
    }
}
