"""ticktape's engine library (no CLI code here).

Layers, imports pointing down only (tests/test_architecture.py checks every module; inside
one layer only a package's own modules import each other):
  L0 errors, types, intents (order intents a policy returns), plugins (the loader),
     instruments (tick, lot, minimum notional per symbol)
  L1 clock, market, metrics, timing, settings, rundir; then config, protocols (the seams)
  L2 sources (schema -> recorded -> merge, timer, table, synthetic); then store; then
     importers, catalog, session, inspect; then selection, repair and the stages, which never import
     each other: features, models, policies, risk, execution, portfolio, recording
  L3 live (feeds, venues' normalisers, recording parts); then stress (scenario, inject,
     faults) and feedsim (feed simulators serving recorded sessions)
  L4 engine (knows protocols only) and warm (history into the stages before a run), then
     engine_timed, engine_live (its parts)
  L5 runtime (the one place that picks implementations) and live.stepper; then trainer,
     bench, report, batch, scaffold (new strategy), stress.run, live.session; then sweep,
     live.run, live.dashboard
  L6 api (the notebook facade over runtime and report)
"""
