//! The cache on both backends — the local Redis and the in-process map — and what it
//! does when Redis is refused, stalls, or comes back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use keel_core::cache::{BreakerState, Cache, CacheError};
use keel_core::context::Context;
use keel_core::db::Db;
use keel_core::health::Check;
use keel_core::ratelimit::{RateLimiter, Rule};
use keel_core::settings::Settings;
use keel_testkit::{Link, Proxy, TestDb};

fn settings(overrides: &[(&str, &str)]) -> Settings {
    keel_testkit::settings("postgres://postgres@127.0.0.1:5432/unused", overrides)
}

fn redis_at(url: &str) -> Cache {
    let [(_, _), (_, prefix)] = keel_testkit::redis_settings();
    replica(url, &prefix)
}

/// One replica's cache: caches made with the same prefix share entries and stamps.
fn replica(url: &str, prefix: &str) -> Cache {
    Cache::from_settings(
        &settings(&[
            ("REDIS_URL", url),
            ("CACHE_KEY_PREFIX", prefix),
            ("REDIS_TIMEOUT", "200ms"),
        ])
        .cache,
    )
    .unwrap()
}

/// Polls `done` for up to 5 s; whether it came true.
async fn eventually(done: impl AsyncFnMut() -> bool) -> bool {
    keel_testkit::eventually(Duration::from_secs(5), done).await
}

fn redis() -> Cache {
    redis_at(&keel_testkit::redis_url())
}

fn memory() -> Cache {
    Cache::from_settings(&settings(&[]).cache).unwrap()
}

fn both() -> [Cache; 2] {
    [redis(), memory()]
}

#[tokio::test]
async fn values_are_stored_expire_and_are_deleted_alone_or_by_prefix() {
    for cache in both() {
        let backend = cache.backend();
        cache.set("a:1", &"one", Duration::from_secs(60)).await;
        cache.set("a:2", &vec![1, 2], Duration::from_secs(60)).await;
        cache.set("b:1", &42_u32, Duration::from_millis(50)).await;
        assert_eq!(
            cache.get::<String>("a:1").await.as_deref(),
            Some("one"),
            "{backend}"
        );
        assert_eq!(
            cache.get::<Vec<i32>>("a:2").await,
            Some(vec![1, 2]),
            "{backend}"
        );
        assert_eq!(cache.get::<u32>("b:1").await, Some(42), "{backend}");
        // A value of another shape is a miss, not an error.
        assert_eq!(cache.get::<u32>("a:1").await, None, "{backend}");

        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(cache.get::<u32>("b:1").await, None, "{backend}: expired");

        cache.delete("a:1").await;
        assert_eq!(cache.get::<String>("a:1").await, None, "{backend}");
        cache.set("a:3", &3, Duration::from_secs(60)).await;
        cache.set("ab", &4, Duration::from_secs(60)).await;
        cache.delete_prefix("a:").await;
        assert_eq!(cache.get::<i32>("a:2").await, None, "{backend}");
        assert_eq!(cache.get::<i32>("a:3").await, None, "{backend}");
        assert_eq!(cache.get::<i32>("ab").await, Some(4), "{backend}");
        cache.delete_prefix("").await;
    }
}

#[tokio::test]
async fn prefixes_keep_apps_apart() {
    let (one, two) = (redis(), redis());
    one.set("k", &1, Duration::from_secs(60)).await;
    assert_eq!(two.get::<i32>("k").await, None);
    two.delete_prefix("").await;
    assert_eq!(one.get::<i32>("k").await, Some(1));
    one.delete_prefix("").await;
}

#[tokio::test]
async fn counters_run_in_fixed_windows() {
    for cache in both() {
        let backend = cache.backend();
        let window = Duration::from_millis(300);
        assert_eq!(cache.count("c").await.unwrap().0, 0, "{backend}");
        assert_eq!(cache.incr("c", window).await.unwrap().0, 1, "{backend}");
        let (n, left) = cache.incr("c", window).await.unwrap();
        assert_eq!(n, 2, "{backend}");
        assert!(left <= window && !left.is_zero(), "{backend}: {left:?}");
        let (n, left) = cache.count("c").await.unwrap();
        assert_eq!(n, 2, "{backend}");
        assert!(left <= window, "{backend}");
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(
            cache.incr("c", window).await.unwrap().0,
            1,
            "{backend}: a new window"
        );
        cache.delete_prefix("").await;
    }
}

/// A zero time to live switches caching off for that value: every call computes, and
/// nothing is stored that a later call with a real TTL could serve.
#[tokio::test]
async fn a_zero_ttl_stamped_value_is_computed_every_time() {
    for cache in both() {
        let backend = cache.backend();
        let computed = AtomicUsize::new(0);
        let get = |ttl| {
            cache.get_or_compute_stamped("z", &["zs"], ttl, || async {
                Ok::<_, CacheError>(computed.fetch_add(1, Ordering::SeqCst))
            })
        };
        assert_eq!(get(Duration::ZERO).await.unwrap(), 0, "{backend}");
        assert_eq!(get(Duration::ZERO).await.unwrap(), 1, "{backend}");
        assert_eq!(get(Duration::from_secs(60)).await.unwrap(), 2, "{backend}");
        assert_eq!(
            get(Duration::from_secs(60)).await.unwrap(),
            2,
            "{backend}: cached"
        );
        cache.delete_prefix("").await;
    }
}

#[tokio::test]
async fn a_stamped_value_is_recomputed_after_a_bump_and_a_racing_store_is_never_served() {
    for cache in both() {
        let backend = cache.backend();
        let get = |value: &'static str| {
            let cache = cache.clone();
            async move {
                cache
                    .get_or_compute_stamped("v", &["s1", "s2"], Duration::from_secs(60), || async {
                        Ok::<_, CacheError>(value.to_owned())
                    })
                    .await
                    .unwrap()
            }
        };
        assert_eq!(get("first").await, "first", "{backend}");
        assert_eq!(get("second").await, "first", "{backend}: cached");
        cache.bump("s2").await;
        assert_eq!(get("third").await, "third", "{backend}: s2 changed");
        assert_eq!(get("fourth").await, "third", "{backend}");

        // A load that read the stamps before a change and stores after it.
        let slow = cache.get_or_compute_stamped("v", &["s1"], Duration::from_secs(60), || {
            let cache = cache.clone();
            async move {
                cache.bump("s1").await; // the change commits while we load
                Ok::<_, CacheError>("stale".to_owned())
            }
        });
        assert_eq!(slow.await.unwrap(), "stale");
        let fresh = cache
            .get_or_compute_stamped("v", &["s1"], Duration::from_secs(60), || async {
                Ok::<_, CacheError>("fresh".to_owned())
            })
            .await
            .unwrap();
        assert_eq!(fresh, "fresh", "{backend}: the racing store is ignored");
        cache.delete_prefix("").await;
    }
}

/// A key read as another type than it was stored as is a miss, computed afresh and kept
/// as the new type: what a release that changed a cached type finds in the cache.
#[tokio::test]
async fn a_stamped_value_read_as_another_type_is_computed_afresh() {
    for cache in both() {
        let backend = cache.backend();
        let ttl = Duration::from_secs(60);
        let text = cache
            .get_or_compute_stamped("t", &["ts"], ttl, || async {
                Ok::<_, CacheError>("text".to_owned())
            })
            .await;
        assert_eq!(text.unwrap(), "text", "{backend}");
        for (computed, expected) in [(7_u64, 7), (8, 7)] {
            let number = cache
                .get_or_compute_stamped("t", &["ts"], ttl, || async {
                    Ok::<_, CacheError>(computed)
                })
                .await;
            assert_eq!(number.unwrap(), expected, "{backend}");
        }
        cache.delete_prefix("").await;
    }
}

/// A stamp lost after its bump (evicted from the in-process map, or deleted while a value
/// was computed) never makes a value computed before the bump current again.
#[tokio::test]
async fn a_lost_stamp_never_revives_a_value_from_before_its_bump() {
    let cache = memory();
    let get = |value: &'static str| {
        cache.get_or_compute_stamped("v", &["s"], Duration::from_secs(60), move || async move {
            Ok::<_, CacheError>(value.to_owned())
        })
    };
    assert_eq!(
        get("before").await.unwrap(),
        "before",
        "computed before any bump"
    );
    cache.bump("s").await;
    cache.delete("stamp:s").await;
    assert_eq!(get("after").await.unwrap(), "after");
    assert_eq!(
        get("later").await.unwrap(),
        "after",
        "kept under the stamp made for it"
    );
}

/// Counts computations, so a test can tell a value served from a cache from a new one.
#[derive(Clone, Default)]
struct Loads(Arc<AtomicUsize>);

impl Loads {
    async fn get(&self, cache: &Cache) -> usize {
        let loads = self.0.clone();
        cache
            .get_or_compute_stamped("v", &["s"], Duration::from_secs(60), || async move {
                Ok::<_, CacheError>(loads.fetch_add(1, Ordering::SeqCst) + 1)
            })
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_bump_on_one_replica_reaches_what_another_keeps_in_memory() {
    let [(_, _), (_, prefix)] = keel_testkit::redis_settings();
    let url = keel_testkit::redis_url();
    let (one, two) = (replica(&url, &prefix), replica(&url, &prefix));
    assert!(eventually(async || one.follows_bumps() && two.follows_bumps()).await);

    let loads = Loads::default();
    assert_eq!(loads.get(&one).await, 1);
    assert_eq!(loads.get(&two).await, 1, "shared through redis");

    // Past a few heartbeats the feed is still followed, and a kept value is served from
    // memory: removing it from Redis behind the cache's back doesn't make it a miss.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        one.follows_bumps() && two.follows_bumps(),
        "heartbeats answered"
    );
    let mut raw = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = redis::cmd("DEL")
        .arg(format!("{prefix}:v"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(loads.get(&one).await, 1, "kept in memory");

    two.bump("s").await;
    let seen = eventually(async || loads.get(&one).await == 2).await;
    assert!(
        seen,
        "the other replica recomputes after the bump's message"
    );
    assert_eq!(loads.get(&two).await, 2);

    // A namespace-wide delete drops what every replica keeps.
    one.delete_prefix("").await;
    assert!(eventually(async || loads.get(&two).await == 3).await);
    one.delete_prefix("").await;
}

#[tokio::test]
async fn a_replica_that_lost_the_bump_feed_reads_through_to_redis() {
    let [(_, _), (_, prefix)] = keel_testkit::redis_settings();
    let proxy = Proxy::start(redis_addr()).await;
    let behind = replica(&format!("redis://{}/0", proxy.addr()), &prefix);
    let other = replica(&keel_testkit::redis_url(), &prefix);
    assert!(eventually(async || behind.follows_bumps()).await);
    let loads = Loads::default();
    assert_eq!(loads.get(&behind).await, 1);

    // The feed drops, a bump goes unheard, the feed comes back: what was kept from
    // before is not trusted.
    proxy.set(Link::Cut);
    assert!(eventually(async || !behind.follows_bumps()).await);
    other.bump("s").await;
    proxy.set(Link::Up);
    assert!(eventually(async || behind.follows_bumps()).await);
    assert!(
        eventually(async || loads.get(&behind).await == 2).await,
        "recomputed under the new stamp once redis answers"
    );
    other.delete_prefix("").await;
}

#[tokio::test]
async fn a_refused_redis_means_misses_skipped_writes_and_an_open_breaker() {
    let cache = redis_at("redis://127.0.0.1:1/0");
    assert_eq!(cache.backend(), "redis");
    cache.set("k", &1, Duration::from_secs(60)).await;
    assert_eq!(cache.get::<i32>("k").await, None);
    assert!(cache.incr("k", Duration::from_secs(1)).await.is_err());
    assert_eq!(cache.breaker_state(), BreakerState::Open);
    // Open: calls are not even tried.
    assert!(matches!(
        cache.count("k").await,
        Err(CacheError::BreakerOpen)
    ));
    let computed = cache
        .get_or_compute_stamped("k", &["s"], Duration::from_secs(60), || async {
            Ok::<_, CacheError>(7)
        })
        .await;
    assert_eq!(computed.unwrap(), 7);

    assert!(cache.check().await.is_err());
}

#[tokio::test]
async fn a_stalled_redis_is_cut_short_by_the_timeout_then_by_the_breaker() {
    let proxy = Proxy::start(redis_addr()).await;
    let cache = redis_at(&format!("redis://{}/0", proxy.addr()));
    cache.set("k", &1, Duration::from_secs(60)).await;
    assert_eq!(cache.get::<i32>("k").await, Some(1));

    proxy.set(Link::Stalled);
    for _ in 0..3 {
        assert!(matches!(
            cache.count("k").await,
            Err(CacheError::Timeout(_) | CacheError::Unavailable(_))
        ));
    }
    assert_eq!(cache.breaker_state(), BreakerState::Open);
    assert!(matches!(
        cache.count("k").await,
        Err(CacheError::BreakerOpen)
    ));
    proxy.set(Link::Up);
    cache.delete_prefix("").await;
}

#[tokio::test]
async fn invalidations_made_during_an_outage_are_sent_before_redis_is_read_again() {
    let proxy = Proxy::start(redis_addr()).await;
    let cache = redis_at(&format!("redis://{}/0", proxy.addr()));
    cache.set("gone", &"old", Duration::from_secs(60)).await;
    cache.set("kept", &"still", Duration::from_secs(60)).await;

    proxy.set(Link::Cut);
    cache.delete("gone").await; // can't reach Redis: kept for later
    assert_eq!(cache.get::<String>("kept").await, None, "a miss while cut");

    proxy.set(Link::Up);
    // The breaker lets a probe through after its cooldown; until then, misses.
    let mut back = None;
    for _ in 0..50 {
        back = cache.get::<String>("kept").await;
        if back.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(back.as_deref(), Some("still"), "recovered by itself");
    assert_eq!(cache.breaker_state(), BreakerState::Closed);
    assert_eq!(
        cache.get::<String>("gone").await,
        None,
        "the delete was sent first"
    );
    assert!(cache.check().await.is_ok());
    cache.delete_prefix("").await;
}

#[tokio::test]
async fn rate_limits_are_shared_through_redis_and_fall_back_to_memory_without_it() {
    let rule = Rule {
        limit: 2,
        window: Duration::from_secs(60),
    };
    let shared = redis();
    let (replica_a, replica_b) = (
        RateLimiter::new(shared.clone()),
        RateLimiter::new(shared.clone()),
    );
    assert_eq!(replica_a.reserve(&[("ip", rule)]).await, Ok(()));
    assert_eq!(replica_b.reserve(&[("ip", rule)]).await, Ok(()));
    assert!(
        replica_a.reserve(&[("ip", rule)]).await.is_err(),
        "one count for both"
    );
    replica_b.reset("ip").await;
    assert_eq!(replica_a.reserve(&[("ip", rule)]).await, Ok(()));
    shared.delete_prefix("").await;

    let down = RateLimiter::new(redis_at("redis://127.0.0.1:1/0"));
    assert_eq!(down.reserve(&[("ip", rule)]).await, Ok(()));
    assert_eq!(down.reserve(&[("ip", rule)]).await, Ok(()));
    assert!(
        down.reserve(&[("ip", rule)]).await.is_err(),
        "counted in this process"
    );
}

/// Forty attempts at once against one Redis, from two replicas, many times over: at
/// most the limit get through, and a key at its limit blocks the attempt without
/// counting it under the other keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reservations_in_redis_take_at_most_the_limit() {
    let rule = Rule {
        limit: 5,
        window: Duration::from_secs(60),
    };
    let [(_, url), (_, prefix)] = keel_testkit::redis_settings();
    let shared = replica(&url, &prefix);
    let replicas = [
        RateLimiter::new(shared.clone()),
        RateLimiter::new(replica(&url, &prefix)),
    ];
    for trial in 0..25 {
        let (account, ip) = (format!("account{trial}"), format!("ip{trial}"));
        let attempts: Vec<_> = (0..40)
            .map(|i| {
                let limiter = replicas[i % 2].clone();
                let (account, ip) = (account.clone(), ip.clone());
                tokio::spawn(async move {
                    limiter
                        .reserve(&[
                            (&account, rule),
                            (
                                &ip,
                                Rule {
                                    limit: 1000,
                                    ..rule
                                },
                            ),
                        ])
                        .await
                        .is_ok()
                })
            })
            .collect();
        let mut taken = 0;
        for attempt in attempts {
            taken += usize::from(attempt.await.unwrap());
        }
        assert_eq!(taken, 5, "trial {trial}");
        // The refused 35 were not counted under the IP.
        let (ip_count, _) = shared.count(&format!("ratelimit:{ip}")).await.unwrap();
        assert_eq!(ip_count, 5, "trial {trial}");
        replicas[0].refund(&account).await;
        assert_eq!(replicas[1].reserve(&[(&account, rule)]).await, Ok(()));
        assert!(replicas[0].reserve(&[(&account, rule)]).await.is_err());
    }
    shared.delete_prefix("").await;
}

fn redis_addr() -> SocketAddr {
    let url = url::Url::parse(&keel_testkit::redis_url()).unwrap();
    let host = url.host_str().unwrap_or("127.0.0.1");
    let port = url.port().unwrap_or(6379);
    format!("{host}:{port}").parse().unwrap()
}

/// One API replica's context on `redis_url` and the test database, sharing invalidations
/// through PostgreSQL as keel-api's do, with its change listener running.
fn replica_sharing(
    test_db: &TestDb,
    redis_url: &str,
    prefix: &str,
) -> (Context, keel_core::db::changes::Listener) {
    let settings = keel_testkit::settings(test_db.url(), &[]);
    let db = Db::new(&test_db.secret_url(), &settings.database, "keel-test");
    let context = Context::new(settings, db, replica(redis_url, prefix)).unwrap();
    let listener = context.db.listen_for_changes();
    (context, listener)
}

/// A replica cut off from Redis (a partition, a Redis that hangs for it) can't send
/// its bump; another replica, told through PostgreSQL, sends it, so the value the bump
/// replaced is served by no replica, even before the cut one gets through.
#[tokio::test(flavor = "multi_thread")]
async fn a_bump_one_replica_cannot_send_is_sent_by_another_it_told_through_postgres() {
    let [(_, _), (_, prefix)] = keel_testkit::redis_settings();
    let test_db = TestDb::new().await;
    let proxy = Proxy::start(redis_addr()).await;
    let (cut, _cut_listener) =
        replica_sharing(&test_db, &format!("redis://{}/0", proxy.addr()), &prefix);
    let (other, _other_listener) = replica_sharing(&test_db, &keel_testkit::redis_url(), &prefix);
    assert!(eventually(async || cut.db.changes().is_live() && other.db.changes().is_live()).await);
    assert!(eventually(async || other.cache.follows_bumps()).await);

    for round in 1..=3 {
        let loads = Loads::default();
        other.cache.bump("s").await;
        assert_eq!(loads.get(&other.cache).await, 1);
        assert_eq!(loads.get(&other.cache).await, 1, "round {round}: kept");

        proxy.set(Link::Cut);
        cut.cache.bump("s").await; // kept for Redis, and told
        assert!(
            eventually(async || loads.get(&other.cache).await == 2).await,
            "round {round}: the other replica sent the bump"
        );
        proxy.set(Link::Up);
        // Back, the cut replica sends its own copy too (one more bump, harmless).
        assert!(eventually(async || loads.get(&cut.cache).await == 3).await);
    }
    other.cache.delete_prefix("").await;
}

/// A client that goes away right after its change committed (the request is dropped
/// mid-bump) doesn't take the bump with it.
#[tokio::test(flavor = "multi_thread")]
async fn a_bump_whose_caller_is_cancelled_still_reaches_every_replica() {
    let [(_, _), (_, prefix)] = keel_testkit::redis_settings();
    let url = keel_testkit::redis_url();
    let (one, two) = (replica(&url, &prefix), replica(&url, &prefix));
    assert!(eventually(async || one.follows_bumps() && two.follows_bumps()).await);
    for round in 0..20 {
        let loads = Loads::default();
        two.bump("s").await;
        assert_eq!(loads.get(&two).await, 1);
        // Polled once, then dropped.
        let _ = futures_util::FutureExt::now_or_never(one.bump("s"));
        assert!(
            eventually(async || loads.get(&two).await == 2).await,
            "round {round}: the bump landed"
        );
    }
    one.delete_prefix("").await;
}

/// A namespace delete kept through an outage can take longer than one call may wait
/// (SCAN and UNLINK over many keys). It still completes, in the background; calls that
/// can't wait for it are misses meanwhile, never reads of what it deletes.
#[tokio::test(flavor = "multi_thread")]
async fn a_long_replay_finishes_though_every_call_waiting_for_it_times_out() {
    let [(_, _), (_, prefix)] = keel_testkit::redis_settings();
    let proxy = Proxy::start(redis_addr()).await;
    // A call waits 25 ms at most: far less than the delete takes.
    let cache = Cache::from_settings(
        &settings(&[
            ("REDIS_URL", &format!("redis://{}/0", proxy.addr())),
            ("CACHE_KEY_PREFIX", &prefix),
            ("REDIS_TIMEOUT", "25ms"),
        ])
        .cache,
    )
    .unwrap();
    let mut raw = redis::Client::open(keel_testkit::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys = 60_000;
    for chunk in (0..keys).collect::<Vec<_>>().chunks(5_000) {
        let mut mset = redis::cmd("MSET");
        for i in chunk {
            mset.arg(format!("{prefix}:k:{i}")).arg("\"old\"");
        }
        let () = mset.query_async(&mut raw).await.unwrap();
    }
    assert_eq!(cache.get::<String>("k:7").await.as_deref(), Some("old"));

    proxy.set(Link::Cut);
    cache.delete_prefix("").await; // kept
    proxy.set(Link::Up);
    let left = async |raw: &mut redis::aio::MultiplexedConnection| {
        let (mut cursor, mut found) = (0_u64, 0);
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}:k:*"))
                .arg("COUNT")
                .arg(10_000)
                .query_async(raw)
                .await
                .unwrap();
            found += keys.len();
            if next == 0 {
                return found;
            }
            cursor = next;
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while left(&mut raw).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the delete never finished"
        );
        assert_eq!(
            cache.get::<String>("k:7").await,
            None,
            "read around the delete"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        eventually(async || cache.get::<String>("k:7").await.is_none()
            && cache.breaker_state() == BreakerState::Closed)
        .await
    );
}
