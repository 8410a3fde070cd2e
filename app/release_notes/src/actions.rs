//! What keel-release-notes records in the audit trail; [`ALL`] is what its
//! [`keel_core::Feature::audit_actions`] declares.

keel_activity::actions! {
    RELEASE_NOTE_CREATED = "release_note.created",
    RELEASE_NOTE_UPDATED = "release_note.updated",
    RELEASE_NOTE_PUBLISHED = "release_note.published",
    RELEASE_NOTE_UNPUBLISHED = "release_note.unpublished",
    RELEASE_NOTE_DELETED = "release_note.deleted",
}
