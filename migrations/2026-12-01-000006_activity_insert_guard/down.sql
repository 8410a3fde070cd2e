ALTER FUNCTION keel_activity_index_words() RESET search_path;
DROP TRIGGER activity_entries_stamp ON activity_entries;
DROP FUNCTION keel_activity_stamp();
