"""Feed simulators: venues' wire formats served on 127.0.0.1 for tests and `ticktape feed serve`.

Apart from the live client (simulator.live), which they exercise:
  tape             a recorded session's raw frames, sliced and merged, for serving
  binance_wire     Binance's frames and error shapes
  faults           the seeded fault schedule (LIVE.md 6b) and its log
  rest             the REST stub: /api/v3/depth from the server's own book, /time, /exchangeInfo
  server           `ticktape feed serve`: the Binance websocket + REST server
  coinbase_tape / coinbase_rest / coinbase_server
                   the same for Coinbase Advanced Trade (`feed serve --venue coinbase`);
                   its REST side answers the products (tick, lot, minimum order value)
"""
