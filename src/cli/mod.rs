//! Operator-facing pieces of the command line: key tools, logging set-up,
//! daemonizing with a readiness pipe.
pub mod args;
pub mod check;
pub mod daemonize;
pub mod dispatch;
pub mod exit;
pub mod gate;
pub mod keys;
pub mod logging;
pub mod mesh;
pub mod output;
pub mod preflight;
pub mod remote;
pub mod status;
