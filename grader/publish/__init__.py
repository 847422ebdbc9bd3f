"""What an instructor hands out: ``grader publish student`` (:mod:`.student`)."""
