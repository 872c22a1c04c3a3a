//! DBC files: the loader and the model it produces.

pub mod model;

pub use model::*;
