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

/// `path` under [`PREFIX`] (`/` is the prefix itself, as poem-openapi joins paths).
///
/// # Panics
/// On a path that already starts with the prefix: a feature written for literal
/// prefixes (`prefix_path = "/api/v1/widgets"`) would otherwise be served, and
/// documented, at `/api/v1/api/v1/widgets`. Like poem-openapi's own checks (duplicate
/// operation ids) this fails as the document is built, so every test and start-up
/// catches it.
fn prefixed(path: &str) -> String {
    assert!(
        !path.starts_with(PREFIX),
        "{path}: a feature's paths are relative to {PREFIX} (prefix_path = \"/widgets\")"
    );
    match path {
        "" | "/" => PREFIX.to_owned(),
        path => format!("{PREFIX}{path}"),
    }
}

impl<T: OpenApi> OpenApi for V1<T> {
    fn meta() -> Vec<MetaApi> {
        let mut apis = T::meta();
        for path in apis.iter_mut().flat_map(|api| api.paths.iter_mut()) {
            path.path = prefixed(&path.path);
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
            table.entry(prefixed(&path)).or_default().extend(methods);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_go_under_the_prefix_once() {
        assert_eq!(prefixed("/auth/login"), "/api/v1/auth/login");
        assert_eq!(prefixed("/users/:id"), "/api/v1/users/:id");
        assert_eq!(prefixed("/"), "/api/v1");
        let twice = std::panic::catch_unwind(|| prefixed("/api/v1/widgets"));
        assert!(twice.is_err(), "a literal prefix is refused");
    }
}
