"""metricanything.models."""
