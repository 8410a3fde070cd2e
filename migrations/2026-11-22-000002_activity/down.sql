-- Dropping the audit trail destroys it: this exists for development databases only.
DROP TABLE activity_seals;
DROP TABLE activity_entries;
DROP FUNCTION keel_refuse_change();
