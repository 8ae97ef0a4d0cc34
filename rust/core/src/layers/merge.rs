//! Merge layers: several inputs of one shape (or broadcastable shapes) combined into one output.
