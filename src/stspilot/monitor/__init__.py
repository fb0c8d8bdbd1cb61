"""The monitor: scheduled re-checks (loop), change detection (alerts), alert delivery (notify)."""
