//! `phantommesh preflight`: owner: fill in.
pub fn run(config: Option<&std::path::Path>) -> i32 {
    let _ = config;
    todo!()
}
