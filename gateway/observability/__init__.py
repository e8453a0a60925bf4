"""What operators watch: Prometheus metrics, OpenTelemetry traces, the request log, the service log,
alerts."""
