"""Stage two: in-memory data, metrics, protocols and the fit/evaluate runner."""
