"""Live sources: one adapter per protocol behind inference.live.rows.LiveSource."""
