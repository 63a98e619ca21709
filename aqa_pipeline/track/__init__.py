"""Single-object tracking and box-to-tube-mask geometry."""
