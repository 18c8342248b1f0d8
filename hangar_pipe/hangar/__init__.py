"""Hangar: its repositories as versioned data for the core (a dependency kind and the data source),
writing to them safely, and every workaround hangar 0.5.2 needs (`compat`)."""
