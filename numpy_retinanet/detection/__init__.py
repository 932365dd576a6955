"""detection subpackage (see DESIGN.md)."""
