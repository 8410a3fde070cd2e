DROP FUNCTION keel_activity_search(text, tsquery, uuid, text, text, text, timestamptz, timestamptz, bigint, integer);
DROP TRIGGER activity_entries_index_words ON activity_entries;
DROP FUNCTION keel_activity_index_words();
DROP TABLE activity_words;
