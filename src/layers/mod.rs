//! Layers: plain-data specs ([`spec`]) and the runtime layers that hold parameters and run
//! forward and backward passes over a whole mini-batch.
pub mod spec;

pub use spec::*;
