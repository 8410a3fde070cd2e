-- "What's new" (keel-release-notes): notes, and each user's read state.

CREATE TABLE release_notes (
    id           uuid PRIMARY KEY,
    -- MAJOR.MINOR.PATCH with an optional pre-release, e.g. 2.4.0 or 3.0.0-rc.1.
    version      text NOT NULL CONSTRAINT release_notes_version_key UNIQUE
                 CHECK (version ~ '^[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}(-[0-9A-Za-z.-]{1,40})?$'),
    title        text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    -- Markdown, stored and returned exactly as written; never rendered by the server.
    body         text NOT NULL CHECK (length(body) BETWEEN 1 AND 20000),
    category     text NOT NULL CHECK (category IN ('feature', 'improvement', 'fix', 'breaking')),
    is_published boolean NOT NULL DEFAULT false,
    published_at timestamptz,
    -- A snapshot of who wrote it (no foreign key into another feature's tables).
    author_id    uuid,
    author_email text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (is_published = (published_at IS NOT NULL))
);
CREATE INDEX release_notes_published_idx ON release_notes (published_at DESC, id)
    WHERE is_published;
SELECT diesel_manage_updated_at('release_notes');

-- Read state = a watermark plus markers above it. Everything published at or before
-- `seen_up_to` counts as read ("mark all read" moves it: one row, however many notes);
-- a note marked read individually gets a marker. The unread count only looks at notes
-- published after the watermark, typically a handful, whatever the history's length.
CREATE TABLE release_note_watermarks (
    user_id    uuid PRIMARY KEY,
    seen_up_to timestamptz NOT NULL
);
CREATE TABLE release_note_reads (
    user_id uuid NOT NULL,
    note_id uuid NOT NULL REFERENCES release_notes (id) ON DELETE CASCADE,
    read_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, note_id)
);

-- Readers' pages are cached per replica; these tell every replica when to drop them.
CREATE TRIGGER release_notes_notify_change
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON release_notes
    FOR EACH STATEMENT EXECUTE FUNCTION keel_notify_change();
