"""runtime/serve/: README.md here says what each file does."""
