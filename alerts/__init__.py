"""Rules, alert lifecycle, audit, dispatch and notifications (issue 4)."""
