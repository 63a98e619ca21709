"""Video decoding and the papers' sampling presets."""
