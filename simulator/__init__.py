"""ticktape's engine library (no CLI code here).

Layers, imports pointing down only:
  L0 errors, types
  L1 clock, market, metrics, timing, config
  L2 sources (schema -> recorded -> merge, timer, synthetic), store, importers, catalog,
     session, inspect; stages: features, models, sizing, risk, execution, portfolio; recording
  L3 stress (scenario, inject, faults)
  L4 engine (knows protocols only), engine_timed (the same engine in simulated time)
  L5 runtime (the one place that picks implementations), trainer, bench, report, stress.run
  L6 api (the notebook facade over runtime and report)
"""
