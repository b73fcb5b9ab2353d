"""export/field/: README.md here says what each file does."""
