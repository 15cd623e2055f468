"""Farms: many agents on one machine from one YAML file, supervised (``decentralml farm run|status``)."""
