DROP TABLE release_note_reads;
DROP TABLE release_note_watermarks;
DROP TABLE release_notes;
