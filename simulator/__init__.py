"""ticktape's engine library (no CLI code here).

Layers, imports pointing down only:
  L0 errors, types
  L2 sources.schema -> store -> importers.*, sources.recorded -> catalog, session, inspect
"""
