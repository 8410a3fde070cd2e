//! `/api/v1`, written once: features declare their paths relative to it (`/auth`,
//! `/users`), and the composition root mounts them all under it.

use std::collections::HashMap;

use poem::endpoint::BoxEndpoint;
use poem::http::Method;
use poem_openapi::OpenApi;
use poem_openapi::registry::{MetaApi, Registry};

/// Where the versioned API lives.
pub const PREFIX: &str = "/api/v1";

/// The operations of `T` under [`PREFIX`], in the routes and the document alike.
#[derive(Debug)]
pub struct V1<T>(pub T);

impl<T: OpenApi> OpenApi for V1<T> {
    fn meta() -> Vec<MetaApi> {
        let mut apis = T::meta();
        for path in apis.iter_mut().flat_map(|api| api.paths.iter_mut()) {
            path.path = format!("{PREFIX}{}", path.path);
        }
        apis
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn add_routes(self, table: &mut HashMap<String, HashMap<Method, BoxEndpoint<'static>>>) {
        let mut own = HashMap::new();
        self.0.add_routes(&mut own);
        for (path, methods) in own {
            table
                .entry(format!("{PREFIX}{path}"))
                .or_default()
                .extend(methods);
        }
    }
}
