"""The pure core: (spec, observed children) -> desired children, status and events. No I/O here."""
