"""runtime/bundle/: README.md here says what each file does."""
