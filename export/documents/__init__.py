"""export/documents/: README.md here says what each file does."""
