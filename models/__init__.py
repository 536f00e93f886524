"""Engine adapters: one small interface per engine kind, one module per backend."""
