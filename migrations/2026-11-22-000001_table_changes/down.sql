DROP TRIGGER user_roles_notify_change ON user_roles;
DROP TRIGGER roles_notify_change ON roles;
DROP TRIGGER users_notify_change ON users;
DROP FUNCTION keel_notify_change();
