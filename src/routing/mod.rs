//! Cryptokey routing: the allowed-IPs longest-prefix table.
pub mod allowedips;
pub use allowedips::AllowedIps;
