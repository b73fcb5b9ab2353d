"""export/ship/: README.md here says what each file does."""
