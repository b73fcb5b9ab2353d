"""One reader per document format, each turning a file's text (or the file) into blocks
(export/document.py): `plain` (.txt), `markdown` (.md), `html_page` (.html), `pdf`, `word`
(.docx). They import only export/document.py, never each other or export/ingest.py, which
finds the files and picks the reader.
"""
