"""Static evidence: facts read from the notebook's code with ``ast``, no execution."""
