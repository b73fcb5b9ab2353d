"""runtime/ask/: README.md here says what each file does."""
