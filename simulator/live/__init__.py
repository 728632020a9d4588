"""Live mode: a real websocket feed in, the same pipeline, paper fills, everything recorded.

Modules, in import order (each imports only those before it):
  frames       what the network reader hands on: stamped, sequenced raw frames
  inbox        the bounded, conflating hand-off between the reader and the pipeline
  consumed     consumed events -> the engine's batches (contract-checked) and tables
  adapter      what the client needs from a venue: VenueProfile, Normalizer, VenueAdapter
  venues/      one module per venue (binance, coinbase): profile, subscriptions, normaliser
  parts        crash-safe rotating Parquet parts; session consolidation and recovery
  keepalive    connection settings, reconnect backoff, connect limiter, counters
  receiver     the websocket client connection: frames split and handed on as they are read
  loop_base / rollover / connection
               the websocket connection manager (timers, make-before-break, REST snapshots)
  network      the connection on its own thread (LiveNetwork)
  session      one symbol: normaliser -> checks -> engine, with its recording and run dir
  run          `ticktape live`: threads, stop conditions, the run manifests
  dashboard    the rich live dashboard
The feed simulators that tests and `ticktape feed serve` use live apart, in simulator.feedsim.
"""
