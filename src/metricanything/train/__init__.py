"""metricanything.train."""
