"""Features: model inputs and labels from validated rows, as a task spec says."""
