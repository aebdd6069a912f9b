-- How a review names its author in public: what the patient chose when writing it.
-- Initials by default, so a public list of a doctor's reviews is not a list of that
-- doctor's patients; existing reviews (written before the choice existed) get the
-- default too.
ALTER TABLE reviews ADD COLUMN author_shown_as text NOT NULL DEFAULT 'initials'
    CHECK (author_shown_as IN ('initials', 'full_name', 'anonymous'));
