//! Revocations racing rotations. In each trial a client refreshes one session as fast as
//! it can while the session is ended some other way; once the revocation returns, no
//! token the looping client ever got may work, nothing of the session may be live in
//! the database, and neither side may have failed with anything but a 401.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use keel_core::ApiError;
use keel_core::auth::Principal;
use keel_user::UserService;
use keel_user::models::refresh_sessions;
use keel_user::services::Device;
use uuid::Uuid;

use crate::support::{PASSWORD, Session, TestApp};

/// Trials per revocation kind. Half fire as soon as the loop starts (the revocation
/// usually wins the first lock), half after a few rotations (mid-loop).
const TRIALS: usize = 16;

/// One test per case, so each runs, and fails, on its own.
macro_rules! races {
    ($($name:ident: $race:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            $race.await;
        }
    )*};
}

#[derive(Debug, Clone, Copy)]
enum Revocation {
    /// `POST /auth/logout` with the looping session's first (long rotated) refresh token.
    LogoutWithRefreshToken,
    /// `POST /auth/logout` with the looping session's access token.
    LogoutWithAccessToken,
    /// `POST /auth/logout-all` from another session of the same user.
    LogoutAll,
    /// `DELETE /auth/sessions/{id}` from another session of the same user.
    DeleteSession,
    /// `PUT /auth/me/password` from another session (which stays).
    ChangePassword,
    /// An administrator sets the password.
    AdminSetsPassword,
    Deactivate,
    ForceLogout,
    /// The first refresh token presented again after the loop rotated it.
    Reuse,
}

/// What the looping client collected: every pair it was handed.
struct Loop {
    stop: Arc<AtomicBool>,
    rotations: Arc<AtomicUsize>,
    handle: tokio::task::JoinHandle<Vec<Session>>,
}

/// Refreshes `start` until told to stop or refused; any error but a 401 fails the test.
fn refresh_loop(service: UserService, start: Session) -> Loop {
    let stop = Arc::new(AtomicBool::new(false));
    let rotations = Arc::new(AtomicUsize::new(0));
    let handle = tokio::spawn({
        let (stop, rotations) = (stop.clone(), rotations.clone());
        async move {
            let mut got = vec![start];
            while !stop.load(Ordering::Acquire) {
                let presented = got.last().map(|s| s.refresh.clone()).unwrap_or_default();
                match service.refresh(&presented, Device::default()).await {
                    Ok(pair) => {
                        got.push(Session {
                            access: pair.access.token,
                            refresh: pair.refresh,
                        });
                        rotations.fetch_add(1, Ordering::Release);
                    }
                    Err(ApiError::Unauthorized(_)) => break,
                    Err(err) => panic!("a rotation racing a revocation failed: {err:?}"),
                }
            }
            got
        }
    });
    Loop {
        stop,
        rotations,
        handle,
    }
}

/// One live refresh token presented twice at once: one presentation rotates it, the other
/// then finds it rotated, which is reuse, so the session ends, the new pair with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_token_presented_twice_at_once_rotates_once_then_ends_the_session() {
    let app = TestApp::spawn().await;
    for trial in 0..TRIALS {
        let session = app.sign_up(&format!("twice{trial}@example.com")).await;
        let family = principal(&app, &session.access).await.session_id;
        let (first, second) = tokio::join!(
            app.service.refresh(&session.refresh, Device::default()),
            app.service.refresh(&session.refresh, Device::default()),
        );
        let rotated = match (first, second) {
            (Ok(pair), Err(ApiError::Unauthorized(_)))
            | (Err(ApiError::Unauthorized(_)), Ok(pair)) => pair,
            (first, second) => panic!(
                "trial {trial}: want one rotation and one 401, got {:?} and {:?}",
                first.map(drop),
                second.map(drop)
            ),
        };
        let again = app
            .service
            .refresh(&rotated.refresh, Device::default())
            .await;
        assert!(
            matches!(again, Err(ApiError::Unauthorized(_))),
            "trial {trial}: the pair handed out survived the reuse"
        );
        assert_eq!(live_tokens(&app, family).await, 0, "trial {trial}");
    }
}

async fn principal(app: &TestApp, access: &str) -> Arc<Principal> {
    app.service
        .authenticator()
        .authenticate(access)
        .await
        .expect("a live session")
}

/// The live refresh tokens of session `family`.
async fn live_tokens(app: &TestApp, family: Uuid) -> i64 {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    let mut conn = app.db.connect().await;
    refresh_sessions::table
        .filter(refresh_sessions::family_id.eq(family))
        .filter(refresh_sessions::revoked_at.is_null())
        .count()
        .get_result(&mut conn)
        .await
        .unwrap()
}

async fn race(kind: Revocation) {
    race_on(kind, &[]).await;
}

/// [`race`] with the principals in Redis (stamped values, kept in memory while the
/// bump feed is up) instead of this process's cache.
async fn race_with_redis(kind: Revocation) {
    let redis = keel_testkit::redis_settings();
    let vars: Vec<(&str, &str)> = redis.iter().map(|(k, v)| (*k, v.as_str())).collect();
    race_on(kind, &vars).await;
}

async fn race_on(kind: Revocation, overrides: &[(&str, &str)]) {
    let app = TestApp::spawn_with(overrides).await;
    let admin_session = app.superuser(&format!("admin-{kind:?}@example.com")).await;
    let admin = principal(&app, &admin_session.access).await;
    let mut total_rotations = 0;
    for trial in 0..TRIALS {
        let email = format!("racer{trial}-{kind:?}@example.com").to_lowercase();
        let looping = app.sign_up(&email).await;
        let other = app.sign_in(&email).await;
        let looped = principal(&app, &looping.access).await;
        let caller = principal(&app, &other.access).await;
        let (user, family) = (looped.user_id, looped.session_id);

        let client = refresh_loop(app.service.clone(), looping.clone());
        // Mid-loop trials wait for a few rotations; the others fire at once. A reuse
        // needs the first token to have been rotated already.
        let wait_for = match (kind, trial % 2) {
            (Revocation::Reuse, _) => 1 + trial % 4,
            (_, 0) => 0,
            _ => 1 + trial % 5,
        };
        while client.rotations.load(Ordering::Acquire) < wait_for {
            tokio::task::yield_now().await;
        }

        let service = &app.service;
        let outcome = match kind {
            Revocation::LogoutWithRefreshToken => {
                service.logout(Some(&looping.refresh), None).await
            }
            Revocation::LogoutWithAccessToken => service.logout(None, Some(&looped)).await,
            Revocation::LogoutAll => service.logout_all(&caller).await,
            Revocation::DeleteSession => service.revoke_my_session(&caller, family).await,
            Revocation::ChangePassword => {
                let new = format!("{PASSWORD} {trial}");
                service
                    .change_password(&caller, PASSWORD.to_owned(), new)
                    .await
            }
            Revocation::AdminSetsPassword => service
                .update_user(
                    &admin,
                    user,
                    None,
                    None,
                    Some(format!("{PASSWORD} {trial}")),
                )
                .await
                .map(drop),
            Revocation::Deactivate => service.deactivate_user(&admin, user).await.map(drop),
            Revocation::ForceLogout => service.force_logout(&admin, user).await,
            Revocation::Reuse => match service.refresh(&looping.refresh, Device::default()).await {
                Err(ApiError::Unauthorized(_)) => Ok(()),
                other => panic!("a reused token was not refused: {other:?}"),
            },
        };
        if let Err(err) = outcome {
            panic!("trial {trial}: {kind:?} failed while a rotation raced it: {err:?}");
        }

        // The revocation has returned: whatever the loop holds or gets from here on must
        // be dead. Let it run on (its next refresh must be refused), then stop it.
        let stop_after = client.rotations.load(Ordering::Acquire) + 3;
        for _ in 0..200 {
            if client.handle.is_finished() || client.rotations.load(Ordering::Acquire) >= stop_after
            {
                break;
            }
            tokio::task::yield_now().await;
        }
        client.stop.store(true, Ordering::Release);
        let got = client.handle.await.expect("the loop didn't panic");
        total_rotations += got.len() - 1;

        assert_eq!(
            live_tokens(&app, family).await,
            0,
            "trial {trial}: {kind:?} returned but session {family} still has a live token \
             after {} rotations",
            got.len() - 1
        );
        let last = got.last().expect("at least the first pair");
        assert!(
            service
                .refresh(&last.refresh, Device::default())
                .await
                .is_err(),
            "trial {trial}: {kind:?}: the newest refresh token still works"
        );
        for pair in [got.first(), got.last()].into_iter().flatten() {
            assert!(
                service
                    .authenticator()
                    .authenticate(&pair.access)
                    .await
                    .is_err(),
                "trial {trial}: {kind:?}: an access token of the ended session still works"
            );
        }
        if matches!(kind, Revocation::ChangePassword) {
            // The session that changed the password stays.
            assert!(live_tokens(&app, caller.session_id).await > 0);
            assert_eq!(app.me_status(&other.access).await, 200);
        }
    }
    assert!(
        total_rotations > TRIALS,
        "{kind:?}: the loop hardly ran ({total_rotations} rotations in {TRIALS} trials), so \
         nothing raced"
    );
}

races! {
    logout_with_the_refresh_token_beats_a_refresh_loop: race(Revocation::LogoutWithRefreshToken);
    logout_with_the_access_token_beats_a_refresh_loop: race(Revocation::LogoutWithAccessToken);
    logout_all_beats_a_refresh_loop: race(Revocation::LogoutAll);
    deleting_a_session_beats_a_refresh_loop: race(Revocation::DeleteSession);
    a_password_change_beats_a_refresh_loop: race(Revocation::ChangePassword);
    an_admin_set_password_beats_a_refresh_loop: race(Revocation::AdminSetsPassword);
    deactivation_beats_a_refresh_loop: race(Revocation::Deactivate);
    force_logout_beats_a_refresh_loop: race(Revocation::ForceLogout);
    reuse_detection_beats_a_refresh_loop: race(Revocation::Reuse);
}

/// How a permission is taken away while the holder keeps making requests.
#[derive(Debug, Clone, Copy)]
enum Demotion {
    /// `PUT /users/{id}/roles` without the role that grants it.
    RoleRemoved,
    /// `PUT /roles/{id}/permissions` without it.
    PermissionRevoked,
}

/// A holder authenticates in a tight loop (loading and caching their principal) while
/// an administrator takes a permission away: once that call returns, the next request
/// must not carry the permission, in every trial.
async fn demotion_race(kind: Demotion, trials: usize, overrides: &[(&str, &str)]) {
    let app = TestApp::spawn_with(overrides).await;
    let admin_session = app.superuser(&format!("admin-{kind:?}@example.com")).await;
    let admin = principal(&app, &admin_session.access).await;
    app.role_with("reader", &["users:read"]).await;
    let reader_role =
        keel_user::crud::access::find_role_by_name(&mut app.db.connect().await, "reader")
            .await
            .unwrap()
            .expect("the role exists")
            .id;
    for trial in 0..trials {
        let email = format!("holder{trial}-{kind:?}@example.com").to_lowercase();
        app.register(&email).await;
        app.grant_role(&email, "reader").await;
        if matches!(kind, Demotion::PermissionRevoked) {
            app.service
                .set_role_permissions(&admin, reader_role, vec!["users:read".to_owned()])
                .await
                .unwrap();
        }
        let session = app.sign_in(&email).await;
        let holder = principal(&app, &session.access).await;
        assert!(holder.has("users:read"), "trial {trial}: set up");

        let stop = Arc::new(AtomicBool::new(false));
        let loads = Arc::new(AtomicUsize::new(0));
        let requests = tokio::spawn({
            let (service, access) = (app.service.clone(), session.access.clone());
            let (stop, loads) = (stop.clone(), loads.clone());
            async move {
                while !stop.load(Ordering::Acquire) {
                    service.authenticator().authenticate(&access).await.unwrap();
                    loads.fetch_add(1, Ordering::Release);
                    // A principal kept in memory answers without awaiting anything: let
                    // the worker run the Redis connection's task too, as a server
                    // reading sockets between requests would.
                    tokio::task::yield_now().await;
                }
            }
        });
        while loads.load(Ordering::Acquire) < trial % 4 {
            tokio::task::yield_now().await;
        }
        match kind {
            Demotion::RoleRemoved => app
                .service
                .set_user_roles(&admin, holder.user_id, vec!["user".to_owned()])
                .await
                .map(drop),
            Demotion::PermissionRevoked => app
                .service
                .set_role_permissions(&admin, reader_role, Vec::new())
                .await
                .map(drop),
        }
        .unwrap_or_else(|err| panic!("trial {trial}: {kind:?} failed: {err:?}"));
        let after = principal(&app, &session.access).await;
        stop.store(true, Ordering::Release);
        requests.await.unwrap();
        assert!(
            !after.has("users:read"),
            "trial {trial}: {kind:?} returned, but the next request still holds users:read"
        );
    }
}

races! {
    removing_a_role_beats_requests_in_flight: demotion_race(Demotion::RoleRemoved, TRIALS, &[]);
    revoking_a_role_permission_beats_requests_in_flight: demotion_race(Demotion::PermissionRevoked, TRIALS, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removing_a_role_beats_requests_in_flight_with_redis() {
    let redis = keel_testkit::redis_settings();
    let vars: Vec<(&str, &str)> = redis.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Three times the trials: the window this covers (a read storing a token fetched
    // just before the bump reached Redis) is a few microseconds wide.
    demotion_race(Demotion::RoleRemoved, 3 * TRIALS, &vars).await;
}

races! {
    logout_all_beats_a_refresh_loop_with_redis: race_with_redis(Revocation::LogoutAll);
    a_password_change_beats_a_refresh_loop_with_redis: race_with_redis(Revocation::ChangePassword);
    logout_with_the_access_token_beats_a_refresh_loop_with_redis: race_with_redis(Revocation::LogoutWithAccessToken);
}

/// Sign-ins whose password check overlapped a password reset or a deactivation: once
/// that returns, none of them may have left a working session, in any trial.
async fn logins_in_flight_race(deactivate: bool) {
    let app = TestApp::spawn_with(&[("LOGIN_MAX_FAILURES_PER_ACCOUNT", "100")]).await;
    let admin_session = app.superuser("admin-logins@example.com").await;
    let admin = principal(&app, &admin_session.access).await;
    let mut overlapped = 0;
    for trial in 0..TRIALS {
        let email = format!("signer{trial}@example.com");
        app.register(&email).await;
        let user = {
            let session = app.sign_in(&email).await;
            principal(&app, &session.access).await.user_id
        };
        let logins: Vec<_> = (0..6)
            .map(|_| {
                let (service, email) = (app.service.clone(), email.clone());
                tokio::spawn(async move {
                    service
                        .login(&email, PASSWORD.to_owned(), Device::default())
                        .await
                })
            })
            .collect();
        for _ in 0..trial * 50 {
            tokio::task::yield_now().await;
        }
        let revoked = if deactivate {
            app.service.deactivate_user(&admin, user).await.map(drop)
        } else {
            let new = Some(format!("{PASSWORD} {trial}"));
            app.service
                .update_user(&admin, user, None, None, new)
                .await
                .map(drop)
        };
        revoked.unwrap_or_else(|err| panic!("trial {trial}: {err:?}"));
        for login in logins {
            match login.await.unwrap() {
                Ok(pair) => {
                    overlapped += 1;
                    assert!(
                        app.service
                            .authenticator()
                            .authenticate(&pair.access.token)
                            .await
                            .is_err(),
                        "trial {trial}: a sign-in outlived the revocation"
                    );
                    assert!(
                        app.service
                            .refresh(&pair.refresh, Device::default())
                            .await
                            .is_err()
                    );
                }
                Err(ApiError::Unauthorized(_)) => {}
                Err(err) => panic!("trial {trial}: a login failed with {err:?}"),
            }
        }
        let mut conn = app.db.connect().await;
        let live: i64 = {
            use diesel::prelude::*;
            use diesel_async::RunQueryDsl;
            refresh_sessions::table
                .filter(refresh_sessions::user_id.eq(user))
                .filter(refresh_sessions::revoked_at.is_null())
                .count()
                .get_result(&mut conn)
                .await
                .unwrap()
        };
        assert_eq!(live, 0, "trial {trial}: a session outlived the revocation");
    }
    // A reset hashes the new password, so it overlaps logins still hashing theirs:
    // some must have signed in (and then been revoked by it), or nothing raced.
    assert!(
        deactivate || overlapped > 0,
        "no login overlapped the reset"
    );
}

races! {
    a_password_reset_beats_logins_in_flight: logins_in_flight_race(false);
    deactivation_beats_logins_in_flight: logins_in_flight_race(true);
}

/// Sign-ins of one account at once, right after its hashing parameters changed: each
/// verifies against the old hash and stores a rehash, so all but the first find the
/// stored hash changed under the account lock. The password is the same, so every one
/// of them must still sign in (they check again against the new hash).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sign_ins_during_a_rehash_all_succeed() {
    use argon2::password_hash::PasswordHasher;

    const PEPPER: &str = "test-pepper-for-the-rehash-race-0123456789";
    let app = TestApp::spawn_with(&[
        ("PASSWORD_PEPPER", PEPPER),
        ("LOGIN_MAX_FAILURES_PER_ACCOUNT", "100"),
    ])
    .await;
    for trial in 0..4 {
        let email = format!("rehash{trial}@example.com");
        app.register(&email).await;
        // Hashed with weaker parameters than keel's, as before an upgrade.
        let weak = argon2::Argon2::new_with_secret(
            PEPPER.as_bytes(),
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(8 * 1024, 1, 1, None).unwrap(),
        )
        .unwrap()
        .hash_password(PASSWORD.as_bytes())
        .unwrap()
        .to_string();
        {
            use diesel::prelude::*;
            use diesel_async::RunQueryDsl;
            use keel_user::models::users;
            diesel::update(users::table.filter(users::email.eq(&email)))
                .set(users::password_hash.eq(&weak))
                .execute(&mut app.db.connect().await)
                .await
                .unwrap();
        }
        let logins = (0..6).map(|_| app.login(&email, PASSWORD));
        let statuses: Vec<u16> = futures_util::future::join_all(logins)
            .await
            .iter()
            .map(|a| a.status.as_u16())
            .collect();
        assert_eq!(statuses, [200; 6], "trial {trial}");
        // The sign-ins stored the rehash and recorded themselves.
        let (stored, last_login) = {
            use diesel::prelude::*;
            use diesel_async::RunQueryDsl;
            use keel_user::models::users;
            users::table
                .filter(users::email.eq(&email))
                .select((users::password_hash, users::last_login_at))
                .first::<(String, Option<chrono::DateTime<chrono::Utc>>)>(
                    &mut app.db.connect().await,
                )
                .await
                .unwrap()
        };
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "trial {trial}: not rehashed: {stored}"
        );
        assert!(last_login.is_some(), "trial {trial}: no last_login_at");
    }
}

/// Administrative actions racing each other on the same role rows: two superusers
/// deactivated at once (each checks it isn't the last), two superusers deactivating
/// each other, and a role deleted while one of its holders is edited. Every trial ends
/// with each call answered properly — never a deadlock's 500 — and a superuser left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_administration_never_deadlocks() {
    let app = TestApp::spawn().await;
    let root_session = app.superuser("root-races@example.com").await;
    let root = principal(&app, &root_session.access).await;
    let ok_or_refused = |what: &str, outcome: Result<(), ApiError>| match outcome {
        Ok(()) | Err(ApiError::StateConflict(_) | ApiError::Forbidden(_)) => {}
        Err(err) => panic!("{what}: {err:?}"),
    };
    for trial in 0..TRIALS {
        let (a, b) = (
            app.superuser(&format!("su-a{trial}@example.com")).await,
            app.superuser(&format!("su-b{trial}@example.com")).await,
        );
        let (a, b) = (
            principal(&app, &a.access).await,
            principal(&app, &b.access).await,
        );
        let (first, second) = tokio::join!(
            app.service.deactivate_user(&root, a.user_id),
            app.service.deactivate_user(&root, b.user_id),
        );
        ok_or_refused("deactivating two superusers", first.map(drop));
        ok_or_refused("deactivating two superusers", second.map(drop));

        let c = app.superuser(&format!("su-c{trial}@example.com")).await;
        let c = principal(&app, &c.access).await;
        let (first, second) = tokio::join!(
            app.service.deactivate_user(&root, c.user_id),
            app.service
                .set_user_roles(&c, root.user_id, vec!["user".to_owned()]),
        );
        ok_or_refused("superusers demoting each other", first.map(drop));
        ok_or_refused("superusers demoting each other", second.map(drop));
        // Whatever won, root is still a superuser or it restores itself for the next
        // trial (the last superuser is never demoted).
        if !principal(&app, &root_session.access)
            .await
            .roles
            .iter()
            .any(|r| r == "superuser")
        {
            app.grant_role("root-races@example.com", "superuser").await;
        }

        let role = format!("temp{trial}");
        app.role_with(&role, &["users:read"]).await;
        let holder = format!("holder-temp{trial}@example.com");
        app.register(&holder).await;
        app.grant_role(&holder, &role).await;
        let holder_id = keel_user::crud::users::find_by_email(&mut app.db.connect().await, &holder)
            .await
            .unwrap()
            .unwrap()
            .id;
        let role_id =
            keel_user::crud::access::find_role_by_name(&mut app.db.connect().await, &role)
                .await
                .unwrap()
                .unwrap()
                .id;
        let root = principal(&app, &root_session.access).await;
        let (deleted, edited) = tokio::join!(
            app.service.delete_role(&root, role_id),
            app.service
                .update_user(&root, holder_id, None, Some("Edited"), None),
        );
        ok_or_refused("deleting a role", deleted);
        ok_or_refused("editing its holder", edited.map(drop));
    }
}
