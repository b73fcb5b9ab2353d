"""runtime/field/: the field log at the device and the file it travels back in (README.md)."""
