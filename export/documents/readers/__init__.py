"""One reader per document format, each turning a file's text (or the file) into blocks
(export/documents/document.py): `plain` (.txt), `markdown` (.md), `html_page` (.html), `pdf`, `word`
(.docx), `odt` (.odt, OpenDocument text), `epub` (.epub). They import only export/documents/document.py
and runtime/errors.py, never export/documents/ingest.py, which finds the files and picks the reader;
two shared pieces: `archive` (the zipped XML formats' checks before parsing: size, zip bomb, entity
declarations, depth) for `word`, `odt` and `epub`, and `html_page`'s parser, which `epub` reads each
chapter with.
"""
