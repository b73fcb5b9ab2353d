"""export/llm/: README.md here says what each file does."""
