"""Video data: the procedural world, dataset readers and the frame-record schema."""
