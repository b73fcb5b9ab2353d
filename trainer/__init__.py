"""Outpost trainer: LoRA / QLoRA adapters that teach the bundled model to answer from passages."""
