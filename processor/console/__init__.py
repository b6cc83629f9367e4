"""The analysts' web console (`incentives console`): its own aiohttp process, so a slow page or a
browser holding a live feed open never competes with the stream stages for the worker's loop.

- `users`: the users file and scrypt password hashes (who may sign in);
- `security`: sessions, CSRF tokens, the sign-in throttle and the middleware that enforces them;
- `live`: one `anomaly-alerts` consumer per process fanned out to every browser (Server-Sent Events);
- `pages` / `api`: server-rendered pages and the JSON endpoints behind them, thin over
  `processor.desk` (the same queries and resolution the `incentives alerts` command uses);
- `keys`: the typed keys of what the application holds;
- `app`: wiring and `run`.

docs/console.md says how analysts use it and why the security decisions are what they are.
"""
