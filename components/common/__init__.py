"""KFP-free code shared by every stage: schemas, task specs, storage and errors."""
