"""Pipeline stages: ingest, sessionize, track, pairs, and the pure replay they use."""
