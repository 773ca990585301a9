"""metricanything.eval."""
