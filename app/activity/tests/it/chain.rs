//! The hash chain: sealing order under concurrency, and verification catching tampering
//! done with the append-only triggers switched off (as a superuser could).

use keel_activity::chain::Verdict;
use keel_activity::{Action, Entry, record};

use crate::support::{Trail, try_sql};

/// Seals until nothing is left unsealed (a transaction that just ended elsewhere can hold
/// a round back), then verifies.
async fn verdict(trail: &Trail) -> Verdict {
    for _ in 0..100 {
        trail.service.seal_all().await.unwrap();
        let unsealed = trail
            .count(
                "SELECT count(*) AS count FROM activity_entries e \
                 WHERE NOT EXISTS (SELECT 1 FROM activity_seals s WHERE s.entry_id = e.id)",
            )
            .await;
        if unsealed == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    trail.service.verify().await.unwrap()
}

fn assert_intact(verdict: &Verdict, sealed: i64) {
    match verdict {
        Verdict::Intact {
            sealed: n,
            head: Some((position, hash)),
            unsealed: 0,
        } => {
            assert_eq!((*n, *position), (sealed, sealed));
            assert_eq!(hash.len(), 64);
        }
        other => panic!("expected an intact chain of {sealed}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_trail_verifies() {
    let trail = Trail::new().await;
    assert_eq!(
        verdict(&trail).await,
        Verdict::Intact {
            sealed: 0,
            head: None,
            unsealed: 0
        }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn many_concurrent_writers_still_give_one_intact_chain() {
    let trail = Trail::new().await;
    let writers = (0..16).map(|w| {
        let db = trail.db.clone();
        tokio::spawn(async move {
            for i in 0..25 {
                let entry = Entry::new(
                    Action::new("auth.login_succeeded"),
                    "session",
                    format!("w{w} e{i}"),
                );
                db.transaction(async move |conn| {
                    record(conn, entry).await?;
                    Ok::<_, keel_core::ApiError>(())
                })
                .await
                .unwrap();
            }
        })
    });
    // Seal while they write: the frontier must never skip an entry still committing.
    let sealer = {
        let service = trail.service.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                service.seal_all().await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
    };
    for writer in writers.collect::<Vec<_>>() {
        writer.await.unwrap();
    }
    sealer.await.unwrap();
    assert_intact(&verdict(&trail).await, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entry_behind_an_open_transaction_waits_to_be_sealed() {
    let trail = Trail::new().await;
    let mut slow = trail.raw().await;
    try_sql(&mut slow, "BEGIN").await.unwrap();
    record(
        &mut slow,
        Entry::new(Action::new("user.created"), "user", "slow"),
    )
    .await
    .unwrap();
    trail.record("fast").await; // a younger transaction, committed first

    trail.service.seal_all().await.unwrap();
    assert_eq!(
        trail
            .count("SELECT count(*) AS count FROM activity_seals")
            .await,
        0,
        "nothing is final while an older transaction may still add entries"
    );
    try_sql(&mut slow, "COMMIT").await.unwrap();
    assert_intact(&verdict(&trail).await, 2);
    // Sealed in transaction order: the slow (older) one first.
    let first = trail
        .count("SELECT e.id AS count FROM activity_seals s JOIN activity_entries e ON e.id = s.entry_id WHERE s.position = 1")
        .await;
    let slow_id = trail
        .count("SELECT id AS count FROM activity_entries WHERE summary = 'slow'")
        .await;
    assert_eq!(first, slow_id);
}

/// Tamper as a superuser would: switch the append-only triggers off, change history.
async fn tamper(trail: &Trail, sql: &str) {
    let mut conn = trail.raw().await;
    try_sql(
        &mut conn,
        &format!(
            "ALTER TABLE activity_entries DISABLE TRIGGER USER; \
             ALTER TABLE activity_seals DISABLE TRIGGER USER; \
             {sql}; \
             ALTER TABLE activity_entries ENABLE TRIGGER USER; \
             ALTER TABLE activity_seals ENABLE TRIGGER USER;"
        ),
    )
    .await
    .unwrap();
}

async fn sealed_trail(entries: usize) -> Trail {
    let trail = Trail::new().await;
    for i in 1..=entries {
        trail.record(&format!("entry {i}")).await;
    }
    assert_intact(&verdict(&trail).await, entries as i64);
    trail
}

fn assert_broken_at(verdict: Verdict, at: i64, why: &str, case: &str) {
    match verdict {
        Verdict::Broken {
            position, reason, ..
        } => {
            assert_eq!(position, at, "{case}: {reason}");
            assert!(reason.contains(why), "{case}: {reason}");
        }
        intact => panic!("{case} went unnoticed: {intact:?}"),
    }
}

/// Every kind of tampering `verify` must name, each on a freshly sealed trail: how many
/// entries, what a superuser changes, and where and why the chain then breaks.
const TAMPERING: &[(&str, usize, &str, i64, &str)] = &[
    (
        "an altered summary",
        5,
        "UPDATE activity_entries SET summary = 'nothing to see' WHERE summary = 'entry 3'",
        3,
        "changed after sealing",
    ),
    (
        "altered metadata",
        3,
        "UPDATE activity_entries SET metadata = '{\"x\": 1}' WHERE summary = 'entry 2'",
        2,
        "changed after sealing",
    ),
    (
        "an altered actor",
        3,
        "UPDATE activity_entries SET actor_email = 'someone@else' WHERE summary = 'entry 1'",
        1,
        "changed after sealing",
    ),
    (
        "a removed entry",
        4,
        "ALTER TABLE activity_seals DROP CONSTRAINT activity_seals_entry_id_fkey; \
         DELETE FROM activity_entries WHERE summary = 'entry 2'",
        2,
        "missing",
    ),
    (
        "a removed seal",
        4,
        "DELETE FROM activity_seals WHERE position = 3",
        3,
        "seal 3 is missing",
    ),
    (
        "a rewritten seal",
        3,
        "UPDATE activity_seals SET hash = sha256('forged') WHERE position = 2",
        2,
        "changed after sealing",
    ),
    (
        "an entry slipped into sealed history",
        3,
        "INSERT INTO activity_entries (tx_id, action, entity_type, summary) \
         VALUES (1, 'user.created', 'user', 'backdated')",
        3,
        "unsealed entry sits inside",
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn verify_reports_every_kind_of_tampering() {
    for &(case, entries, sql, position, why) in TAMPERING {
        let trail = sealed_trail(entries).await;
        tamper(&trail, sql).await;
        let verdict = trail.service.verify().await.unwrap();
        assert_broken_at(verdict, position, why, case);
    }
}

/// A database owner can rewrite an entry and recompute every seal after it (the hashes
/// are unkeyed), and `verify` alone then finds an intact chain. A head kept outside
/// the database is what catches it, and a cut-off tail too.
#[tokio::test(flavor = "multi_thread")]
async fn a_kept_head_catches_a_rewrite_with_recomputed_seals_and_a_cut_tail() {
    let trail = sealed_trail(4).await;
    let kept = trail.head().await;
    assert_eq!(kept.position, 4);
    assert_eq!(kept.to_string().parse(), Ok(kept.clone()));
    assert_intact(&trail.service.verify_since(&kept).await.unwrap(), 4);
    trail.record("entry 5").await;
    assert_intact(&verdict(&trail).await, 5);
    assert!(matches!(
        trail.service.verify_since(&kept).await.unwrap(),
        Verdict::Intact { sealed: 5, .. }
    ));

    // The owner rewrites entry 2 and reseals everything from scratch.
    tamper(
        &trail,
        "UPDATE activity_entries SET summary = 'nothing happened' WHERE summary = 'entry 2'; \
         DELETE FROM activity_seals",
    )
    .await;
    assert_intact(&verdict(&trail).await, 5);
    assert_broken_at(
        trail.service.verify_since(&kept).await.unwrap(),
        4,
        "no longer on the chain",
        "a rewrite with recomputed seals",
    );

    // A tail cut off, seals and all, leaves a chain that verifies but ends too early.
    let trail = sealed_trail(4).await;
    let kept = trail.head().await;
    tamper(
        &trail,
        "DELETE FROM activity_seals WHERE position >= 3; \
         DELETE FROM activity_entries WHERE summary IN ('entry 3', 'entry 4')",
    )
    .await;
    assert_intact(&verdict(&trail).await, 2);
    assert_broken_at(
        trail.service.verify_since(&kept).await.unwrap(),
        4,
        "before the kept head",
        "a cut-off tail",
    );
    for bad in [
        "4",
        "x:00",
        "0:ab",
        "4:abc",
        &format!("4:{}", "g".repeat(64)),
    ] {
        assert!(
            bad.parse::<keel_activity::chain::Anchor>().is_err(),
            "{bad}"
        );
    }
}
