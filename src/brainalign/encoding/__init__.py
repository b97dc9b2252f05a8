"""brainalign.encoding."""
