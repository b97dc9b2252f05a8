"""brainalign.behavior."""
