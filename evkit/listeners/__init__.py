"""Event listeners: the base class, timers, the manual inbox, HTTP and Redis Streams."""
