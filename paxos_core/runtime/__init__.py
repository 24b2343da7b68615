"""Running engines against real storage and transports (the effect contract, carried out)."""
