"""The composition root: command line, daemon assembly, demo; the one place that may import
every other package (kiosk/, drivers/, sync/, ui/). Nothing imports agent/ except the
`python -m kiosk` shim (kiosk/__main__.py). Layers: docs/architecture.md."""
