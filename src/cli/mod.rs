//! Operator-facing pieces of the command line: key tools, logging set-up,
//! daemonizing with a readiness pipe.
pub mod daemonize;
pub mod gate;
pub mod keys;
pub mod logging;
pub mod mesh;
pub mod preflight;
pub mod remote;
pub mod status;
