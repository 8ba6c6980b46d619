"""Pure functions from data to Adaptive Card (1.5) JSON. No I/O, no Bot Framework types."""
