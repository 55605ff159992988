"""The monitor stage: KServe inference logs (CloudEvents over HTTP) paired and written to the lake."""
