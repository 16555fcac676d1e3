"""Results: the SQLite store and everything that reads it (statistics, reports, plots)."""
