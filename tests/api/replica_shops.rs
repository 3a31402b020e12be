//! Two replicas on one PostgreSQL schema share the shops when every shop falls due at
//! once (a cycle start): each replica fetches some of the shop hosts, never all of them,
//! each product is fetched once, and each host by one replica only. Real `pricewatch
//! serve` processes, as in `replicas.rs`; skipped without `PRICEWATCH_TEST_POSTGRES_URL`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};

use crate::daemon::activity;
use crate::fakes::{FakeChannel, FakeShop, FaultProxy};
use crate::postgres::TestDatabase;
use crate::replicas::{
    conversation, first_prices_sent, now_ms, page, path, post, until, Db, Replica, LEASE,
};

/// Shop hosts: 127.0.0.1 to 127.0.0.4 (Linux routes all of 127/8 to the loopback).
const HOSTS: usize = 4;
const PRODUCTS: usize = 20 * HOSTS;
const CYCLES: usize = 3;
const AGENTS: [&str; 2] = ["replica-a", "replica-b"];
/// Generous: a cycle of 80 quick pages takes a second or two.
const WAIT: Duration = Duration::from_secs(45);

/// Product `i` is on host `i % HOSTS`.
fn host_of(i: usize) -> usize {
    i % HOSTS
}

fn host_name(h: usize) -> String {
    format!("127.0.0.{}", h + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_shops_that_fall_due_together() {
    let Some(db) = TestDatabase::new("replicas_share_the_shops_that_fall_due_together") else {
        return;
    };
    let started = Instant::now();
    let shop = FakeShop::start().await;
    shop.record_requests();
    for i in 0..PRODUCTS {
        shop.put(&path(i), page(i, "100.00"));
    }
    // One address per shop host, all passing to the one fake shop.
    let mut hosts = Vec::new();
    for h in 0..HOSTS {
        hosts.push(FaultProxy::start_at(&host_name(h), &shop.base).await);
    }
    let host_of_path: HashMap<String, usize> =
        (0..PRODUCTS).map(|i| (path(i), host_of(i))).collect();
    let channel = FakeChannel::start().await;
    let replicas = [
        Replica::start(&db, AGENTS[0]).await,
        Replica::start(&db, AGENTS[1]).await,
    ];
    // The replicas created the schema.
    let pg = Db(db.config.connect().await.unwrap());

    // Each host's watches go to both replicas (product i to replica (i / HOSTS) % 2), so
    // that who took a host at the first checks says nothing of the split to come.
    let client = reqwest::Client::new();
    let addrs: Vec<String> = replicas.iter().map(|r| r.daemon.addr.clone()).collect();
    let statuses: Vec<u16> = stream::iter(0..PRODUCTS)
        .map(|i| {
            let url = format!("{}{}", hosts[host_of(i)].base, path(i));
            let mut watch = activity(
                "emulator",
                &channel.url,
                &conversation(i),
                &format!("watch {url}"),
            );
            watch["id"] = format!("w{i}").into();
            let (client, addr) = (&client, &addrs[(i / HOSTS) % 2]);
            async move { post(client, addr, &watch).await }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    first_prices_sent(&channel, &pg, PRODUCTS, Instant::now() + WAIT).await;

    for cycle in 1..=CYCLES {
        // Cycle 1 starts while the first checks' host leases may still be held, cycle 2
        // once every lease has run out (all hosts free: the race for them), cycle 3 while
        // each replica still holds the hosts it fetched in cycle 2.
        if cycle == 2 {
            tokio::time::sleep(LEASE + Duration::from_secs(1)).await;
        }
        let from = shop.requests().len();
        // Due now rather than long ago: a host overdue by more than a lease time may be
        // taken whatever the share, which a cycle start is not.
        let due = i64::try_from(now_ms()).unwrap();
        pg.0.execute("UPDATE products SET next_due_ms = $1", &[&due])
            .await
            .unwrap();
        until(Instant::now() + WAIT, || async {
            let fetched: HashSet<String> = shop
                .requests()
                .into_iter()
                .skip(from)
                .map(|r| r.path)
                .collect();
            let unrecorded: i64 =
                pg.0.query_one(
                    "SELECT count(*) FROM products \
                     WHERE next_due_ms <= $1 OR claimed_by IS NOT NULL",
                    &[&due],
                )
                .await
                .unwrap()
                .get(0);
            if fetched.len() == PRODUCTS && unrecorded == 0 {
                Ok(())
            } else {
                Err(format!(
                    "cycle {cycle}: {} products fetched, {unrecorded} not recorded",
                    fetched.len()
                ))
            }
        })
        .await;
        let split = assert_split(&shop, from, &host_of_path, cycle);
        eprintln!("cycle {cycle}: {split:?}");
    }
    for replica in replicas {
        replica.daemon.stop();
    }
    eprintln!("{CYCLES} cycles shared in {:?}", started.elapsed());
}

/// Checks cycle `cycle`'s fetches (the shop's requests from `from` on): each product once,
/// each host by one replica, and each replica some of the hosts but not all. Returns the
/// hosts each replica fetched.
fn assert_split(
    shop: &FakeShop,
    from: usize,
    host_of_path: &HashMap<String, usize>,
    cycle: usize,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut fetches: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in shop.requests().into_iter().skip(from) {
        fetches.entry(r.path).or_default().push(r.user_agent);
    }
    let again: Vec<_> = fetches.iter().filter(|(_, by)| by.len() != 1).collect();
    assert!(
        again.is_empty(),
        "cycle {cycle}: products fetched more than once: {again:?}"
    );
    assert_eq!(fetches.len(), PRODUCTS, "cycle {cycle}: products fetched");

    let mut by_agent: BTreeMap<String, BTreeSet<String>> = AGENTS
        .iter()
        .map(|a| ((*a).to_owned(), BTreeSet::new()))
        .collect();
    let mut by_host: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (p, by) in &fetches {
        let host = host_name(host_of_path[p]);
        for agent in by {
            by_agent
                .get_mut(agent)
                .unwrap_or_else(|| panic!("cycle {cycle}: {p} fetched by {agent:?}"))
                .insert(host.clone());
            by_host
                .entry(host.clone())
                .or_default()
                .insert(agent.clone());
        }
    }
    for (agent, hosts) in &by_agent {
        assert!(
            !hosts.is_empty(),
            "cycle {cycle}: {agent} fetched nothing, the other replica took every host: \
             {by_agent:?}"
        );
    }
    for (host, agents) in &by_host {
        assert_eq!(
            agents.len(),
            1,
            "cycle {cycle}: {host} fetched by both replicas: {by_agent:?}"
        );
    }
    // With two replicas, these say too that each fetched between 1 and HOSTS - 1 hosts.
    by_agent
}
