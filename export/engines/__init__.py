"""export/engines/: README.md here says what each file does."""
