"""Person detection (ultralytics YOLO) and crop rules."""
