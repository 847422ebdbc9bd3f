"""What a grading run writes.

Records, spreadsheets, gradebooks, HTML pages and charts (jinja2 templates in
``templates/``). Imports neither :mod:`grader.run` nor :mod:`grader.batch`.
"""
