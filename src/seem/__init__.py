"""SEEM: Segment Everything Everywhere All at Once."""
