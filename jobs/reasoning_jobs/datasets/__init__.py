"""Generated datasets in the published layouts, so tests, benchmarks and the local run need no download."""
