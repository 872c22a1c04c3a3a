//! Trace formats (placeholder until the readers land).
