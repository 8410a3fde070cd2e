//! The one trait a feature crate implements, and the list keel-app composes from it.
//!
//! A feature is a value built from the process [`Context`]; keel-app names every
//! feature once (a tuple implementing [`Features`]) and derives from that list what
//! keel-api mounts under `/api/v1`, the permissions seeded and published as OAuth2
//! scopes, the task registry keel-api and keel-worker share, and the OpenAPI document.

use std::future::Future;

use poem::Response;
use poem::endpoint::BoxEndpoint;
use poem_openapi::OpenApi;

use crate::ApiError;
use crate::context::{Context, Declared};
use crate::db::Db;
use crate::http::versioned;
use crate::settings::{AppEnv, Reader, Section};
use crate::tasks::Registry;

/// keel-api's endpoint as a feature sees it in [`Feature::wrap`].
pub type Endpoint = BoxEndpoint<'static, Response>;

/// Background work that stops when dropped (a task handle that aborts on drop).
pub type Running = Box<dyn std::any::Any + Send>;

/// A feature: its operations, permissions, tasks, seed step and background work.
/// Only [`Feature::build`] and [`Feature::api`] are required.
pub trait Feature: Send + Sync + Sized + 'static {
    /// Short and unique (`user`, `release_notes`): names the feature in errors.
    const NAME: &'static str;

    /// Its operations, mounted under `/api/v1`: each `#[OpenApi]` declares its
    /// `prefix_path` relative to it (`/widgets`) and its own tag.
    type Api: OpenApi + 'static;

    /// Its own settings section, `()` when it has none: read and checked with
    /// keel-core's when the process loads its settings.
    type Settings: Section;

    /// Where the OAuth2 password flow signs in, relative to `/api/v1`, if this feature
    /// issues access tokens (keel-user's `/auth/token`): the published document's
    /// Authorize dialog posts there. keel-core's scheme can't name a feature's path.
    const TOKEN_PATH: Option<&'static str> = None;

    /// Builds the feature's services. Runs once per process, and on an offline context
    /// for the OpenAPI document, so it must not need the database to answer.
    fn build(
        ctx: &Context,
        settings: Self::Settings,
    ) -> impl Future<Output = Result<Self, ApiError>> + Send;

    fn api(&self) -> Self::Api;

    /// The permissions it declares, as `(code, description)` (see
    /// [`crate::auth::declared`]): seeded at start and listed as OAuth2 scopes.
    fn permissions() -> Vec<(String, String)> {
        Vec::new()
    }

    /// The audit actions it records (`noun.verb`): the values the audit trail's
    /// `action` filter accepts.
    fn audit_actions() -> Vec<&'static str> {
        Vec::new()
    }

    /// Registers its tasks and periodic jobs, each with the services it runs with
    /// (usually a clone of `self`), and a dead-letter hook if it has one.
    fn tasks(&self, registry: &mut Registry) {
        let _ = registry;
    }

    /// Puts in the database what the feature needs before it serves; idempotent, run
    /// by keel-api at start and by `keel-admin seed`. `declared` holds the permissions
    /// of every feature. Returns what it changed, one phrase each, for the operator.
    fn seed(
        db: &Db,
        declared: &[(String, String)],
    ) -> impl Future<Output = Result<Vec<String>, ApiError>> + Send {
        let _ = (db, declared);
        async { Ok(Vec::new()) }
    }

    /// Wraps keel-api's endpoint with request data or middleware the feature's
    /// extractors rely on (keel-user installs the token authenticator). Features wrap in
    /// list order, so the first listed is innermost and sees what later ones add.
    fn wrap(&self, endpoint: Endpoint) -> Endpoint {
        endpoint
    }

    /// Starts the background work keel-api runs while it serves (keel-activity's
    /// sealer); keel-api holds what this returns until it stops.
    fn spawn(&self) -> Vec<Running> {
        Vec::new()
    }
}

/// A failure building or seeding one feature, named.
#[derive(Debug, thiserror::Error)]
#[error("{feature}: {source}")]
pub struct FeatureError {
    pub feature: &'static str,
    pub source: ApiError,
}

/// Every feature of an application, as a tuple of up to 15 [`Feature`]s in mounting
/// order.
pub trait Features: Send + Sync + Sized + 'static {
    /// The operations of every feature.
    type Api: OpenApi + 'static;

    fn build(ctx: &Context) -> impl Future<Output = Result<Self, FeatureError>> + Send;

    fn api(&self) -> Self::Api;

    /// Reads every feature's settings section: pass it to
    /// [`Settings::load_with`](crate::Settings::load_with) so their problems are
    /// reported with keel-core's.
    fn read_settings(r: &mut Reader<'_>, env: AppEnv);

    /// The features' names, in order.
    fn names() -> Vec<&'static str>;

    /// Every permission the features declare.
    fn permissions() -> Vec<(String, String)>;

    /// Every audit action the features record.
    fn audit_actions() -> Vec<&'static str>;

    /// The first listed feature's [`Feature::TOKEN_PATH`].
    fn token_path() -> Option<&'static str>;

    /// What the features declare: their permissions, audit actions and token endpoint.
    fn declared() -> Declared {
        Declared {
            permissions: Self::permissions(),
            audit_actions: Self::audit_actions(),
            token_url: Self::token_path().map(|path| format!("{}{path}", versioned::PREFIX)),
        }
    }

    /// Registers every feature's tasks.
    fn tasks(&self, registry: &mut Registry);

    /// Seeds every feature in order; `declared` holds every permission the
    /// application declares (the features' and the composition root's own).
    fn seed(
        db: &Db,
        declared: &[(String, String)],
    ) -> impl Future<Output = Result<Vec<String>, FeatureError>> + Send;

    fn wrap(&self, endpoint: Endpoint) -> Endpoint;

    fn spawn(&self) -> Vec<Running>;

    /// The built feature of type `F`, if it is listed: for code that drives one feature
    /// of a composed application (keel-admin's account commands) without building it
    /// again.
    fn get<F: Feature>(&self) -> Option<&F>;
}

/// `F`'s settings section, from the variables the context's settings were read from.
fn own_settings<F: Feature>(ctx: &Context) -> Result<F::Settings, FeatureError> {
    ctx.settings
        .section()
        .map_err(|err| named::<F>(ApiError::internal(err)))
}

fn named<F: Feature>(source: ApiError) -> FeatureError {
    FeatureError {
        feature: F::NAME,
        source,
    }
}

macro_rules! features_tuple {
    ($($F:ident $i:tt),+) => {
        impl<$($F: Feature),+> Features for ($($F,)+) {
            // `()` closes the tuple: poem-openapi has no `OpenApi` for 1-tuples.
            type Api = ($($F::Api,)+ ());

            async fn build(ctx: &Context) -> Result<Self, FeatureError> {
                Ok(($(
                    $F::build(ctx, own_settings::<$F>(ctx)?)
                        .await
                        .map_err(named::<$F>)?,
                )+))
            }

            fn read_settings(r: &mut Reader<'_>, env: AppEnv) {
                $(let _: $F::Settings = Section::read(r, env);)+
            }

            fn api(&self) -> Self::Api {
                ($(self.$i.api(),)+ ())
            }

            fn names() -> Vec<&'static str> {
                vec![$($F::NAME),+]
            }

            fn permissions() -> Vec<(String, String)> {
                [$($F::permissions()),+].concat()
            }

            fn audit_actions() -> Vec<&'static str> {
                [$($F::audit_actions()),+].concat()
            }

            fn token_path() -> Option<&'static str> {
                [$($F::TOKEN_PATH),+].into_iter().flatten().next()
            }

            fn tasks(&self, registry: &mut Registry) {
                $(self.$i.tasks(registry);)+
            }

            async fn seed(
                db: &Db,
                declared: &[(String, String)],
            ) -> Result<Vec<String>, FeatureError> {
                let mut changed = Vec::new();
                $(changed.extend($F::seed(db, declared).await.map_err(named::<$F>)?);)+
                Ok(changed)
            }

            fn wrap(&self, endpoint: Endpoint) -> Endpoint {
                $(let endpoint = self.$i.wrap(endpoint);)+
                endpoint
            }

            fn spawn(&self) -> Vec<Running> {
                [$(self.$i.spawn()),+].into_iter().flatten().collect()
            }

            fn get<T: Feature>(&self) -> Option<&T> {
                $(
                    if let Some(feature) = (&self.$i as &dyn std::any::Any).downcast_ref::<T>() {
                        return Some(feature);
                    }
                )+
                None
            }
        }
    };
}

features_tuple!(A 0);
features_tuple!(A 0, B 1);
features_tuple!(A 0, B 1, C 2);
features_tuple!(A 0, B 1, C 2, D 3);
features_tuple!(A 0, B 1, C 2, D 3, E 4);
features_tuple!(A 0, B 1, C 2, D 3, E 4, F 5);
features_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
features_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
features_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
features_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);
features_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10);
features_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11);
features_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12);
features_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13);
features_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13, O 14);
