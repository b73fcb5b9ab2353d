"""trainer/ranker/: README.md here says what each file does."""
