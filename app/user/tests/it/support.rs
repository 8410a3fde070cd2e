//! keel-user mounted the way keel-app mounts it, on a fresh database and a random port.

use keel_core::cache::Cache;
use keel_core::db::Db;
use keel_core::db::changes::Listener;
use keel_core::http::contract::{self, rules};
use keel_core::http::versioned::V1;
use keel_core::settings::Secret;
use keel_core::{Context, Feature};
pub use keel_testkit::Answer;
use keel_testkit::{TestDb, TestServer};
use keel_user::UserService;
use poem::{EndpointExt, Route};
use poem_openapi::OpenApiService;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef-0123456789";
/// A password no test account has.
pub const WRONG: &str = "wrong password!!";

pub const PASSWORD: &str = "correct horse battery";

#[derive(Debug)]
pub struct TestApp {
    server: TestServer,
    pub service: UserService,
    /// The change listener keel-api runs, so cached reads are what the tests exercise.
    _changes: Listener,
    pub db: TestDb,
    client: keel_testkit::Client,
}

/// A signed-in user's tokens.
#[derive(Debug, Clone)]
pub struct Session {
    pub access: String,
    pub refresh: String,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    pub async fn spawn_with(overrides: &[(&str, &str)]) -> Self {
        let db = TestDb::new().await;
        let mut vars = vec![
            ("JWT_SECRET", JWT_SECRET),
            ("PASSWORD_HASH_CONCURRENCY", "2"),
        ];
        vars.extend_from_slice(overrides);
        let settings = keel_testkit::settings(db.url(), &vars);
        let pool = Db::new(&db.secret_url(), &settings.database, "keel-user-tests");
        let changes = pool.listen_for_changes();
        wait_until_live(&pool).await;
        keel_user::services::seed(&pool, <UserService as Feature>::permissions())
            .await
            .expect("seeding succeeds");
        let cache = Cache::from_settings(&settings.cache).expect("cache settings are valid");
        let context = Context::new(settings.clone(), pool, cache).expect("mail settings");
        let own = context
            .settings
            .section()
            .expect("keel-user's settings are valid");
        let service = UserService::new(&context, &own)
            .await
            .expect("the service starts");
        let api = OpenApiService::new(V1(service.api()), "keel-user", "test");
        // As keel-api under test: a status an operation doesn't declare fails, and bodies
        // are held to the shape the published document gives them.
        let mut spec: Value = serde_json::from_str(&api.spec()).expect("the spec reads");
        let permissions = <UserService as Feature>::permissions();
        let codes: Vec<&str> = permissions.iter().map(|(code, _)| code.as_str()).collect();
        rules::declare(&mut spec, &codes, &UserService::audit_actions());
        let routes = Route::new()
            .nest("/", api)
            .data(service.authenticator().clone());
        let ep = contract::hold(routes, &spec, true);
        let server = TestServer::start(ep, &settings).await;
        let client = keel_testkit::Client::new(server.url(""));
        Self {
            server,
            service,
            _changes: changes,
            db,
            client,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        self.client.call(method, path, token, body.as_ref()).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// A POST with no body: the action endpoints (logout, deactivate, activate).
    pub async fn act(&self, path: &str, token: Option<&str>) -> Answer {
        self.call(Method::POST, path, token, None).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Answer {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    pub async fn register(&self, email: &str) {
        let answer = self
            .post(
                "/api/v1/auth/register",
                None,
                json!({"email": email, "password": PASSWORD, "full_name": "Test User"}),
            )
            .await;
        assert_eq!(answer.status, 202, "{answer:?}");
    }

    pub async fn login(&self, email: &str, password: &str) -> Answer {
        self.post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": password}),
        )
        .await
    }

    /// Rotates a refresh token.
    /// `POST /auth/logout` with `refresh_token` in the body, and `bearer` if given.
    pub async fn logout(&self, bearer: Option<&str>, refresh_token: &str) -> Answer {
        self.post(
            "/api/v1/auth/logout",
            bearer,
            json!({"refresh_token": refresh_token}),
        )
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Answer {
        self.post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": refresh_token}),
        )
        .await
    }

    /// How a sign-in with `password` is answered.
    pub async fn login_status(&self, email: &str, password: &str) -> StatusCode {
        self.login(email, password).await.status
    }

    /// Registers `email` and signs in.
    pub async fn sign_up(&self, email: &str) -> Session {
        self.register(email).await;
        self.sign_in(email).await
    }

    pub async fn sign_in(&self, email: &str) -> Session {
        let answer = self.login(email, PASSWORD).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        Session {
            access: answer.body["access_token"].as_str().unwrap().to_owned(),
            refresh: answer.body["refresh_token"].as_str().unwrap().to_owned(),
        }
    }

    /// The status `GET /auth/me` answers with this access token.
    pub async fn me_status(&self, access: &str) -> StatusCode {
        self.get("/api/v1/auth/me", access).await.status
    }

    pub async fn user_id(&self, access: &str) -> Uuid {
        let me = self.get("/api/v1/auth/me", access).await;
        me.body["id"].as_str().unwrap().parse().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }
}

/// The parts of a problem that must not differ between two answers that should be
/// indistinguishable (request id and instance naturally do).
pub fn problem_shape(answer: &Answer) -> (StatusCode, Value, Value, Value) {
    (
        answer.status,
        answer.body["type"].clone(),
        answer.body["title"].clone(),
        answer.body["detail"].clone(),
    )
}

impl TestApp {
    /// Gives `email` the role `name` directly in the database (test set-up only).
    pub async fn grant_role(&self, email: &str, role: &str) {
        use keel_user::crud::{access, users};
        let mut conn = self.db.connect().await;
        let user = users::find_by_email(&mut conn, email)
            .await
            .unwrap()
            .unwrap();
        let role = access::find_role_by_name(&mut conn, role)
            .await
            .unwrap()
            .unwrap();
        access::grant_roles(&mut conn, user.id, &[role.id])
            .await
            .unwrap();
        self.service.user_changed(user.id).await;
    }

    /// Creates a role holding exactly `codes` (test set-up only).
    pub async fn role_with(&self, name: &str, codes: &[&str]) {
        use keel_user::crud::access;
        let mut conn = self.db.connect().await;
        let (role, _) = access::ensure_role(
            &mut conn,
            &keel_user::models::NewRole {
                id: Uuid::now_v7(),
                name: name.to_owned(),
                description: String::new(),
                is_system: false,
            },
        )
        .await
        .unwrap();
        let codes: Vec<String> = codes.iter().map(|c| (*c).to_owned()).collect();
        access::set_role_permissions(&mut conn, role.id, &codes)
            .await
            .unwrap();
        self.service.authenticator().everyone_changed().await;
    }

    /// A signed-in superuser.
    pub async fn superuser(&self, email: &str) -> Session {
        self.register(email).await;
        self.grant_role(email, "superuser").await;
        self.sign_in(email).await
    }
}

/// Waits (up to 10 s) until the change listener is connected.
pub async fn wait_until_live(db: &Db) {
    for _ in 0..200 {
        if db.changes().is_live() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the table change listener did not connect");
}

/// keel-user's service on `db` with the test settings plus `overrides`, as its task
/// handlers get it: to run a handler directly.
pub async fn task_services(db: &TestDb, overrides: &[(&str, &str)]) -> UserService {
    task_services_at(db.url(), overrides).await
}

/// [`task_services`] on the database at `url` (one behind a proxy a test can cut).
pub async fn task_services_at(url: &str, overrides: &[(&str, &str)]) -> UserService {
    let settings = keel_testkit::settings(url, overrides);
    let pool = Db::new(&Secret::new(url), &settings.database, "keel-test");
    let context = Context::new(settings, pool, Cache::memory("test", 10)).unwrap();
    let own = context.settings.section().unwrap();
    UserService::new(&context, &own).await.unwrap()
}
