"""model subpackage (see DESIGN.md)."""
