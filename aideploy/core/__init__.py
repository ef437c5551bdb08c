"""Core values: results, failures, settings, errors, time and redaction (the lowest floor)."""
