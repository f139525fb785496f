//! The WireGuard userspace API (cross-platform UAPI) that `wg` and `wg-quick`
//! speak over `/var/run/wireguard/IFNAME.sock`.
//! - [`protocol`]: pure parsing of `set` operations and formatting of `get`.
//! - `server`: the UNIX socket listener that applies them to a device.
pub mod protocol;
pub mod server;
