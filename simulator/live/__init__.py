"""Live mode: a real websocket feed in, the same pipeline, paper fills, everything recorded.

Modules, in import order (each imports only those before it):
  frames       what the network reader hands on: stamped, sequenced raw frames
  inbox        the bounded, conflating hand-off between the reader and the pipeline
  consumed     consumed events -> the engine's batches (contract-checked) and tables
  binance      pure Binance normaliser: frames -> consumed events, book sync (LIVE.md 1.4)
  coinbase     Coinbase Advanced Trade: profile and pure normaliser (sequence gaps, heartbeats)
  parts        crash-safe rotating Parquet parts; session consolidation and recovery
  connection   websocket connection manager (backoff, timers, rollover, REST snapshots)
  session      one symbol: normaliser -> checks -> engine, with its recording and run dir
  run          `ticktape live`: threads, stop conditions, the run manifests
  dashboard    the rich live dashboard
  feed_tape / feed_binance / feed_rest / feed_faults / feed_server
               `ticktape feed serve`: a recorded session in Binance's wire format, with faults
  coinbase_tape / coinbase_server
               the same for Coinbase Advanced Trade (tests, `feed serve --venue coinbase`)
"""
