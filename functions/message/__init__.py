"""$default: every client frame; and fanout, one chunk of a large broadcast."""
