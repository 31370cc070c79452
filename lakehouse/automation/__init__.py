"""What runs by itself: jobs, schedules and sensors (assets carry their own automation)."""
