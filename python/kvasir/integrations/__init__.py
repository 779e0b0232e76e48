"""Engine connectors. Each module imports its engine (and torch) only when used, and subclasses the
engine's real base class when it is importable, else a documented stand-in with the same signatures."""
