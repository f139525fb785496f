//! The device: peers, keys, index table and packet pipelines.
pub mod ratelimiter;
