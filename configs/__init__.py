"""Setup YAML files shipped with micropl (package data)."""
