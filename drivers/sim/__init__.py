"""Device simulators that speak the real protocol bytes on a pseudo-terminal."""
