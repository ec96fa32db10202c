"""Extractors: one module per source kind, each turning a file's bytes into snippets."""
