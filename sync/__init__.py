"""MQTT sync with the central desk (issue 5)."""
