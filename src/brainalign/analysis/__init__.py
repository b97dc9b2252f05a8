"""brainalign.analysis."""
