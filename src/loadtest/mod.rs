//! `phantommesh loadtest`: owner: fill in.

/// Command-line arguments of `phantommesh loadtest`.
#[derive(clap::Args, Debug)]
pub struct LoadtestArgs {
    /// UAPI socket of the target interface.
    #[arg(long)]
    pub uapi: Option<std::path::PathBuf>,
}

pub fn run(args: LoadtestArgs) -> i32 {
    let _ = args;
    todo!()
}
