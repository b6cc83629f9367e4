"""The fraud analysts' desk: what the `incentives alerts` command and the web console share.

`queries` reads alerts, partners and ledgers from ClickHouse (the projections); `resolve` turns an
analyst's decision into one `AlertResolved` event in the log (the only way a decision takes effect);
`follow` streams alerts as they happen from the `anomaly-alerts` topic. The CLI and the console are
thin adapters over these three.
"""
