"""The stages of one session's voice pipeline, one job each."""
