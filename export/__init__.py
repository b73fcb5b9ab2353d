"""Outpost build side: documents + base model -> bundle."""
