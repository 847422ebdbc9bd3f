"""The rubric file: its schema, validated key by key on load."""
