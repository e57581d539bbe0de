"""lexicons: a fast, typed framework for real-time WebSocket back ends."""
