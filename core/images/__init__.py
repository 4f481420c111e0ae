"""Images: the generate call (charged, dispatched to an image worker, refunded if none delivers) and
content-addressed image files."""
