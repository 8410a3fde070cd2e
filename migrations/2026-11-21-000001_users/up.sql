-- Accounts, role-based access control and refresh-token sessions (keel-user).

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    password_hash text NOT NULL,
    full_name     text NOT NULL DEFAULT '' CHECK (length(full_name) <= 200),
    is_active     boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz,
    -- The object-storage key of the avatar. The bytes live in object storage; a replaced
    -- or removed avatar's object is deleted after the change commits.
    avatar_key    text CHECK (length(avatar_key) <= 512),
    -- When the welcome email went out: the welcome task checks it first, so a
    -- redelivered task doesn't greet the same person twice.
    welcome_sent_at timestamptz
);
-- Case-insensitive uniqueness; named like a column constraint so a violation is a 409
-- on `email`.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE INDEX users_created_at_idx ON users (created_at);
SELECT diesel_manage_updated_at('users');

CREATE TABLE roles (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CONSTRAINT roles_name_key UNIQUE
                CHECK (name ~ '^[a-z][a-z0-9_-]{1,62}$'),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    -- Created by seeding (superuser, user); can't be renamed or deleted.
    is_system   boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
SELECT diesel_manage_updated_at('roles');

-- Declared in code by the features and seeded at start; never created through the API.
CREATE TABLE permissions (
    code        text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_-]*:[a-z][a-z0-9_-]*$'),
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE user_roles (
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id    uuid NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, role_id)
);
CREATE INDEX user_roles_role_id_idx ON user_roles (role_id);

CREATE TABLE role_permissions (
    role_id         uuid NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    permission_code text NOT NULL REFERENCES permissions (code) ON DELETE CASCADE,
    PRIMARY KEY (role_id, permission_code)
);
CREATE INDEX role_permissions_permission_code_idx ON role_permissions (permission_code);

-- One row per refresh token. A session is a family of tokens sharing `family_id`: each
-- refresh revokes the presented row (reason `rotated`, `replaced_by` the new row) and
-- inserts its successor. Presenting a rotated token revokes the whole family.
CREATE TABLE refresh_sessions (
    id            uuid PRIMARY KEY,
    family_id     uuid NOT NULL,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- SHA-256 of the token; the token itself is never stored.
    token_hash    bytea NOT NULL CONSTRAINT refresh_sessions_token_hash_key UNIQUE
                  CHECK (length(token_hash) = 32),
    -- When the family (the sign-in) began, carried over by every rotation.
    started_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz,
    revoke_reason text CHECK (revoke_reason IN (
        'rotated', 'logout', 'logout_all', 'reuse_detected', 'password_changed',
        'deactivated', 'revoked_by_user', 'revoked_by_admin')),
    replaced_by   uuid REFERENCES refresh_sessions (id) ON DELETE SET NULL,
    user_agent    text CHECK (length(user_agent) <= 256),
    ip            text CHECK (length(ip) <= 45),
    CHECK ((revoked_at IS NULL) = (revoke_reason IS NULL))
);
CREATE INDEX refresh_sessions_family_id_idx ON refresh_sessions (family_id);
CREATE INDEX refresh_sessions_active_user_idx ON refresh_sessions (user_id)
    WHERE revoked_at IS NULL;
CREATE INDEX refresh_sessions_expires_at_idx ON refresh_sessions (expires_at);
