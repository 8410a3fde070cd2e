//! What keel-release-notes records in the audit trail; [`ALL`] is what its
//! [`keel_core::Feature::audit_actions`] declares.

use keel_activity::Action;

pub const RELEASE_NOTE_CREATED: Action = Action::new("release_note.created");
pub const RELEASE_NOTE_UPDATED: Action = Action::new("release_note.updated");
pub const RELEASE_NOTE_PUBLISHED: Action = Action::new("release_note.published");
pub const RELEASE_NOTE_UNPUBLISHED: Action = Action::new("release_note.unpublished");
pub const RELEASE_NOTE_DELETED: Action = Action::new("release_note.deleted");

/// Every action above.
pub const ALL: &[Action] = &[
    RELEASE_NOTE_CREATED,
    RELEASE_NOTE_UPDATED,
    RELEASE_NOTE_PUBLISHED,
    RELEASE_NOTE_UNPUBLISHED,
    RELEASE_NOTE_DELETED,
];
