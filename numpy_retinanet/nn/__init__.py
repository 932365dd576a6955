"""nn subpackage (see DESIGN.md)."""
