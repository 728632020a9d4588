"""Importers: real venue recordings -> validated sessions under the data directory."""
