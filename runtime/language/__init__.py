"""Languages: detection, the words of each language, answer kinds, compounds, the texts a user reads (see README.md)."""
