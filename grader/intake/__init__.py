"""Finding submissions: notebook files, LMS names and archives, copies."""
