"""Outpost device runtime: open a bundle, retrieve passages, generate cited answers.

Nothing here imports torch, transformers, peft or sentence-transformers.
"""
