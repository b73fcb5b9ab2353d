"""One reader per document format, each turning a file's text (or the file) into blocks
(export/documents/document.py): `plain` (.txt), `markdown` (.md), `html_page` (.html), `pdf`, `word`
(.docx). They import only export/documents/document.py, never each other or export/documents/ingest.py, which
finds the files and picks the reader.
"""
