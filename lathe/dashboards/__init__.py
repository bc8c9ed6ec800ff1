"""Lathe's Grafana dashboards drawn without Grafana: PromQL run against Prometheus, pages drawn with Plotly.

    lathe dashboards render [--since 30m] [--step auto] [--out DIR] [--prometheus URL] [--json]

``grafana`` reads the dashboard JSON the Helm chart ships (deploy/grafana) into panels,
rows and grid positions; ``variables`` fills in Grafana's template variables and
intervals; ``prometheus`` runs the queries; ``evaluate`` records what every panel got;
``units`` writes values as Grafana does; ``figures`` and ``page`` draw self-contained HTML;
``render`` ties them together and reports which panels had no data.
"""
