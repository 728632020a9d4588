"""Live mode: a real websocket feed in, the same pipeline, paper fills, everything recorded.

Modules, in import order (each imports only those before it):
  frames     what the network reader hands on: stamped, sequenced raw frames
  inbox      the bounded, conflating hand-off between the reader and the pipeline
  binance / coinbase   pure normalizers: frames -> consumed events (book sync included)
  consumed   consumed events -> the engine's batches, the recorder's tables
  parts      crash-safe rotating Parquet parts; session consolidation
  connection websocket connection manager (backoff, timers, resync, rollover)
  feed_server / feed_faults   `ticktape feed serve`: a recorded session in Binance's format
  run        `ticktape live`: threads, signals, the run directory
"""
