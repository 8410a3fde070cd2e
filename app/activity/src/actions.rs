//! What the audit trail records: an [`Action`], stored as `noun.verb`.
//!
//! Each feature declares its own with [`actions!`](crate::actions) and lists them in
//! its [`keel_core::Feature::audit_actions`], so the values the `action` filter accepts
//! (and the enum the OpenAPI document gives it) come from the application's feature
//! list, not from a closed set here.

/// What happened, as `noun.verb` (`user.registered`). Declare one with
/// [`actions!`](crate::actions); renaming one orphans the entries stored under the old
/// name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Action(&'static str);

impl Action {
    pub const fn new(name: &'static str) -> Self {
        Self(name)
    }

    /// The stored name, e.g. `user.registered`.
    pub const fn as_str(self) -> &'static str {
        self.0
    }

    /// Whether `name` has the `noun.verb` form the trail stores (its CHECK constraint:
    /// lowercase letters and `_`, each part starting with a letter).
    pub fn is_well_formed(name: &str) -> bool {
        let word = |w: &str| {
            w.starts_with(|c: char| c.is_ascii_lowercase())
                && w.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        };
        matches!(name.split_once('.'), Some((noun, verb)) if word(noun) && word(verb))
    }
}

/// The stored names of `actions`: what a feature's `audit_actions` returns.
pub fn names(actions: &[Action]) -> Vec<&'static str> {
    actions.iter().map(|a| a.as_str()).collect()
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Declares actions as constants and `ALL`, every one of them (what a feature's
/// `audit_actions` returns), so an action can't be left out of its feature's list:
///
/// ```
/// keel_activity::actions! {
///     /// Doc comments stay with each constant.
///     THING_DONE = "thing.done",
/// }
/// assert_eq!(ALL, &[THING_DONE]);
/// ```
#[macro_export]
macro_rules! actions {
    ($($(#[$meta:meta])* $name:ident = $action:literal),+ $(,)?) => {
        $(
            $(#[$meta])*
            pub const $name: $crate::Action = $crate::Action::new($action);
        )+

        /// Every action above.
        pub const ALL: &[$crate::Action] = &[$($name),+];
    };
}

crate::actions! {
    /// A background task was given up on (permanent error or attempts used up).
    TASK_DEAD_LETTERED = "task.dead_lettered",
}

#[cfg(test)]
mod tests {
    use super::Action;

    #[test]
    fn names_are_noun_dot_verb() {
        for good in ["user.registered", "auth.login_failed", "a.b"] {
            assert!(Action::is_well_formed(good), "{good}");
        }
        for bad in [
            "user",
            "User.created",
            "user.",
            ".x",
            "a.b.c",
            "a.b-c",
            "a.b\0",
            "v2.x",
        ] {
            assert!(!Action::is_well_formed(bad), "{bad}");
        }
    }
}
