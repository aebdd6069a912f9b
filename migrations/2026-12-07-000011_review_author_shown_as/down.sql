ALTER TABLE reviews DROP COLUMN author_shown_as;
