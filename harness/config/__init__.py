"""Suite files: schema, loading with file:line error marks, error types."""
