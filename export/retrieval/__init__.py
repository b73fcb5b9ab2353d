"""export/retrieval/: README.md here says what each file does."""
