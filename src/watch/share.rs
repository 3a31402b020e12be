//! Which shops a replica asks to fetch in a tick, when replicas share the polling. Pure.
//!
//! Replicas split the polling by shop (one holds a host's lease at a time), and they tick
//! together (the same cron in every replica's configuration): one that asked for every due
//! shop would take them all and keep them, and the others would check nothing. So each
//! asks for its fair share, `⌈due shops / replicas polling⌉`: first the shops it holds
//! already (so a shop stays where it is, and its gap is known there), then free ones in an
//! order of its own (so two replicas rarely ask for the same one at once), and gives back
//! those it holds beyond its share. A shop this replica has seen due and fetched by no one
//! for longer than a lease time is asked for whatever the share: a replica counted as
//! polling that does not take its share (stalled) cannot leave a shop unchecked for
//! longer than that.

use std::collections::BTreeMap;

use crate::random::RandomSource;

/// What a replica asks for, and gives back, in one tick.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pick {
    /// Held already and within the share, most overdue first: renewed.
    pub keep: Vec<String>,
    /// Not held, and waiting for more than a lease time: asked for whatever the share.
    pub overdue: Vec<String>,
    /// The rest, in this replica's order: asked for until the share is held.
    pub free: Vec<String>,
    /// Held beyond the share: given back, for another replica to take.
    pub give_back: Vec<String>,
    /// How many shops this replica should hold.
    pub share: usize,
}

/// A due shop and its most overdue product's due time.
type Due<'a> = (&'a String, u64);

/// `due`: each due shop this replica may take, with since when it has seen it due and
/// fetched by no one;
/// `held`: whether this replica holds a shop's lease now; `elsewhere`: the shops other
/// replicas hold (their due products are not in `due`, but they count in the shares);
/// `pollers`: the replicas polling, this one included.
pub fn pick(
    due: &BTreeMap<String, u64>,
    held: impl Fn(&str) -> bool,
    elsewhere: usize,
    pollers: usize,
    now_ms: u64,
    overdue_after_ms: u64,
    rng: &mut impl RandomSource,
) -> Pick {
    let share = (due.len() + elsewhere).div_ceil(pollers.max(1));
    let (mut mine, others): (Vec<Due<'_>>, Vec<Due<'_>>) = due
        .iter()
        .map(|(host, &since)| (host, since))
        .partition(|(host, _)| held(host));
    mine.sort_by_key(|&(host, since)| (since, host.clone()));
    let give_back = mine
        .split_off(share.min(mine.len()))
        .into_iter()
        .map(|(h, _)| h.clone())
        .collect();
    let (overdue, mut free): (Vec<Due<'_>>, Vec<Due<'_>>) = others
        .into_iter()
        .partition(|&(_, since)| since.saturating_add(overdue_after_ms) < now_ms);
    // Fisher–Yates: each replica its own order of the free shops.
    for i in (1..free.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        free.swap(i, j);
    }
    let names = |v: Vec<Due<'_>>| v.into_iter().map(|(h, _)| h.clone()).collect();
    Pick {
        keep: names(mine),
        overdue: names(overdue),
        free: names(free),
        give_back,
        share,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SplitMix64;

    fn due(hosts: &[(&str, u64)]) -> BTreeMap<String, u64> {
        hosts.iter().map(|(h, t)| (h.to_string(), *t)).collect()
    }

    #[test]
    fn alone_a_replica_asks_for_every_due_shop() {
        let d = due(&[("a", 10), ("b", 20), ("c", 30)]);
        let p = pick(&d, |_| false, 0, 1, 40, 1_000, &mut SplitMix64::new(1));
        assert_eq!(p.share, 3);
        assert!(p.keep.is_empty() && p.give_back.is_empty() && p.overdue.is_empty());
        let mut free = p.free.clone();
        free.sort();
        assert_eq!(free, ["a", "b", "c"]);
        // Counted as none (its own presence not seen yet): still all of them.
        assert_eq!(
            pick(&d, |_| false, 0, 0, 40, 1_000, &mut SplitMix64::new(1)).share,
            3
        );
    }

    #[test]
    fn two_replicas_each_ask_for_half_keeping_what_they_hold() {
        let d = due(&[("a", 10), ("b", 20), ("c", 30), ("d", 40), ("e", 50)]);
        // Holding four of five with two replicas polling: keeps the three most overdue,
        // gives the fourth back, asks for nothing more.
        let held = |h: &str| h != "e";
        let p = pick(&d, held, 0, 2, 60, 1_000, &mut SplitMix64::new(1));
        assert_eq!(p.share, 3);
        assert_eq!(p.keep, ["a", "b", "c"]);
        assert_eq!(p.give_back, ["d"]);
        assert_eq!(p.free, ["e"]);
        // The other replica holds nothing: it asks for the free shops, in an order of its
        // own, until it holds its share.
        let p = pick(&d, |_| false, 0, 2, 60, 1_000, &mut SplitMix64::new(2));
        assert_eq!(p.share, 3);
        assert_eq!(p.free.len(), 5);
    }

    #[test]
    fn shops_another_replica_holds_count_in_the_share() {
        // Four shops due, two taken by the other replica before this one ticked: this
        // one's share is two of the four, so it asks for both that are left.
        let d = due(&[("c", 10), ("d", 10)]);
        let p = pick(&d, |_| false, 2, 2, 60, 1_000, &mut SplitMix64::new(1));
        assert_eq!(p.share, 2);
        assert_eq!(p.free.len(), 2);
    }

    #[test]
    fn a_shop_overdue_past_a_lease_time_is_asked_for_whatever_the_share() {
        let d = due(&[("a", 0), ("b", 9_000), ("c", 9_500)]);
        let p = pick(
            &d,
            |h| h == "b",
            0,
            3,
            10_000,
            5_000,
            &mut SplitMix64::new(1),
        );
        assert_eq!(p.share, 1);
        assert_eq!(p.keep, ["b"]);
        assert_eq!(p.overdue, ["a"]);
        assert_eq!(p.free, ["c"]);
        assert!(p.give_back.is_empty());
    }

    #[test]
    fn replicas_order_the_free_shops_differently() {
        let d: BTreeMap<String, u64> = (0..20).map(|i| (format!("h{i:02}"), 0)).collect();
        let one = pick(&d, |_| false, 0, 2, 1, 1_000, &mut SplitMix64::new(1)).free;
        let two = pick(&d, |_| false, 0, 2, 1, 1_000, &mut SplitMix64::new(2)).free;
        assert_ne!(one, two);
        let mut sorted = one.clone();
        sorted.sort();
        assert_eq!(sorted, d.keys().cloned().collect::<Vec<_>>());
    }
}
