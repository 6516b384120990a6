"""Jobs: ``main(argv) -> int`` per stage; parse, configure, read, transform, write."""
