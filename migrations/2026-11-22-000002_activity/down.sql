-- Dropping the audit trail destroys it: this exists for development databases only.
DROP FUNCTION keel_activity_search(text, tsquery, uuid, text, text, text, timestamptz, timestamptz, bigint, integer);
DROP TABLE activity_words;
DROP TABLE activity_seals;
DROP TABLE activity_entries;
DROP FUNCTION keel_activity_index_words();
DROP FUNCTION keel_activity_stamp();
DROP FUNCTION keel_refuse_change();
