"""What a grading run writes.

Records, spreadsheets, gradebooks, HTML pages and charts. File names come from
:mod:`~grader.outputs.names` (no heavy imports, for any writer); HTML and SVG are
jinja2 templates in ``templates/``, rendered through :mod:`~grader.outputs.templating`.
Imports neither :mod:`grader.run` nor :mod:`grader.batch`.
"""
